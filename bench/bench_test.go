//go:build bench

package bench

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
)

// scale is how much work each scenario does. The full scale is issue 6's;
// rounds are what fits the 10-minute budget on a 2-core machine.
type scale struct {
	quick bool

	ordinary       int // scenario 1: messages per run
	ordinaryWarm   int // scenario 1: warm-up messages per instance, not measured
	ordinaryRounds int

	verdicts      []verdictCase // scenario 2
	verdictRounds int

	fanouts   []int // scenario 3: list sizes
	oneCopyAt int   // scenario 3: list size of the one-copy-per-recipient baseline
	fanRounds int   // scenario 3: rounds (the 100,000 fan-out is long)

	mailings       int // scenario 4: messages per run
	mailingMembers int // scenario 4: recipients per message
	mailingRounds  int

	bigMessage int // scenario 5: bytes
	memRounds  int
}

// verdictCase is one message size of scenario 2 and how many messages of
// that size each configuration sends per round.
type verdictCase struct {
	size, samples int
}

// fullScale takes some five minutes on a quiet 2-core machine. The
// noisiest figures (scenarios 1 and 4, where Postfix's own processes
// compete for the cores) get the most rounds.
func fullScale() scale {
	return scale{
		ordinary: 2000, ordinaryWarm: 200, ordinaryRounds: 5,
		verdicts:      []verdictCase{{10_000, 1000}, {1_000_000, 100}, {25_000_000, 34}},
		verdictRounds: 3,
		fanouts:       []int{1_000, 10_000, 100_000}, oneCopyAt: 10_000, fanRounds: 3,
		mailings: 1000, mailingMembers: 10, mailingRounds: 5,
		bigMessage: 50_000_000, memRounds: 2,
	}
}

// quickScale exercises every code path in a minute or two.
func quickScale() scale {
	return scale{
		quick:    true,
		ordinary: 200, ordinaryWarm: 20, ordinaryRounds: 2,
		verdicts:      []verdictCase{{10_000, 50}, {1_000_000, 5}, {5_000_000, 2}},
		verdictRounds: 2,
		fanouts:       []int{500, 2_000}, oneCopyAt: 2_000, fanRounds: 2,
		mailings: 50, mailingMembers: 10, mailingRounds: 2,
		bigMessage: 5_000_000, memRounds: 1,
	}
}

// env is what the scenarios share: the daemon binary and its DKIM key.
type env struct {
	dir    string
	binary string
	key    dkimtest.Key
	scale  scale

	// fanRSS is the peak RSS of each fresh daemon of scenario 3, by list
	// size, for scenario 5.
	fanRSS map[int][]int64

	mu       sync.Mutex
	badExits []string // daemons that did not exit 0 on SIGTERM
}

func (e *env) badExit(what string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.badExits = append(e.badExits, what)
}

// TestBenchmarks runs every scenario, prints the table and writes
// BENCHMARKS.md (not with BENCH_QUICK=1).
func TestBenchmarks(t *testing.T) {
	start := time.Now()
	postfixtest.Require(t)
	if os.Geteuid() != 0 {
		t.Fatal("the benchmark starts Postfix instances: run it as root")
	}
	e := &env{scale: fullScale()}
	if os.Getenv("BENCH_QUICK") != "" {
		e.scale = quickScale()
	}
	// Not t.TempDir: daemons' directories are removed as each ends.
	dir, err := os.MkdirTemp("", "restrictedmail-bench-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.dir = dir
	e.binary = buildDaemon(t, dir)
	e.key = newKey(t)

	var rep report
	rep.load[0] = loadAverage()
	ran := 0
	for _, sc := range []struct {
		name string
		run  func(*testing.T, *env, *report)
	}{
		{"1-milter-ordinary", benchOrdinary},
		{"2-milter-verdict", benchVerdict},
		{"3-fanout", benchFanout},
		{"4-mailings", benchMailings},
		{"5-memory", benchMemory},
		{"6-api-issue", benchAPI},
		{"7-postgres", benchPostgres},
	} {
		scStart := time.Now()
		t.Run(sc.name, func(t *testing.T) { ran++; sc.run(t, e, &rep) })
		t.Logf("%s took %v", sc.name, time.Since(scStart).Round(time.Second))
	}
	if n := len(e.badExits); n > 0 {
		rep.note("%d of the daemons started did not exit 0 on SIGTERM (a daemon bug, not a measurement error); first: %s", n, e.badExits[0])
	}
	rep.elapsed, rep.load[1] = time.Since(start), loadAverage()
	out := rep.markdown()
	fmt.Println(out)
	if e.scale.quick {
		t.Log("BENCH_QUICK: BENCHMARKS.md not written")
		return
	}
	if t.Failed() || ran < 7 {
		t.Log("a scenario failed or was not run (-run): BENCHMARKS.md not written")
		return
	}
	if err := os.WriteFile("../BENCHMARKS.md", []byte(rep.document(e.scale)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote BENCHMARKS.md; the whole run took %v", rep.elapsed.Round(time.Second))
}

// rotate returns the configurations in the order of round r: each starts a
// round in turn, so that no configuration always runs first (on a cold
// cache) or last (after the others heated the machine).
func rotate[T any](xs []T, r int) []T {
	out := make([]T, 0, len(xs))
	for i := range xs {
		out = append(out, xs[(i+r)%len(xs)])
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

// ratios divides a by b element by element (per round).
func ratios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		if b[i] != 0 {
			out[i] = a[i] / b[i]
		}
	}
	return out
}

// rate is items per second.
func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
