// Package layers holds the test that keeps the architecture DEVELOPERS.md
// draws: protocol adapters around one core, configuration at the edge.
// It has no code of its own.
package layers
