//go:build race

package rewrite

// raceDetector: tests that move tens of megabytes use less under -race.
const raceDetector = true
