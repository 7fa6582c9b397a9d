package milter

import (
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/policy"
)

// countingObserver records what the milter reports. Its methods allocate
// nothing, like the metrics package's.
type countingObserver struct {
	mu       sync.Mutex
	ordinary int
	verdicts [16]int // by policy.Reason
	checks   int
}

func (o *countingObserver) MilterOrdinary() { o.mu.Lock(); o.ordinary++; o.mu.Unlock() }
func (o *countingObserver) MilterVerdict(r policy.Reason) {
	o.mu.Lock()
	o.verdicts[r]++
	o.mu.Unlock()
}
func (o *countingObserver) MilterTokenCheck(d time.Duration) {
	o.mu.Lock()
	if d >= 0 {
		o.checks++
	}
	o.mu.Unlock()
}

func (o *countingObserver) snapshot() (ordinary int, verdicts [16]int, checks int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ordinary, o.verdicts, o.checks
}

// TestOrdinaryPathAllocatesNothingObserved: an observer (metrics) keeps the
// ordinary path allocation-free, and is told of every ordinary message.
func TestOrdinaryPathAllocatesNothingObserved(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	obs := &countingObserver{}
	s := New(Options{Rules: rulesOf(cfg), Observer: obs})
	c := &session{srv: s}
	mod := &fakeModifier{}
	allocs := testing.AllocsPerRun(1000, func() {
		c.MailFrom(sender, "", mod)
		c.RcptTo(ordinary, "", mod)
		c.RcptTo("Someone.Else@Example.COM", "", mod)
		if r, _ := c.Data(mod); r != gomilter.RespAccept {
			t.Fatalf("DATA: %v", r)
		}
		c.Abort(mod)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per ordinary message with an observer, want 0", allocs)
	}
	// AllocsPerRun runs the function once more than it measures.
	if n, _, _ := obs.snapshot(); n != 1001 {
		t.Errorf("observer saw %d ordinary messages, want 1001", n)
	}
}

// TestObserverSeesVerdicts: over a real connection, each decision reaches
// the observer once with its reason, and token lookups are timed.
func TestObserverSeesVerdicts(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	h := newHarness(t, func(o *Options) { o.Observer = obs })
	good := h.addToken(t, nil)
	cs := h.session(t)
	headers := []field{{"From", sender}, {"Subject", "x"}}

	send(t, cs, testMessage{from: sender, rcpts: []string{ordinary}, headers: headers})
	send(t, cs, testMessage{from: sender, rcpts: []string{board}, headers: headers})
	send(t, cs, testMessage{from: sender, rcpts: []string{"board+nosuchtoken1@example.org"}, headers: headers})
	send(t, cs, testMessage{from: sender, rcpts: []string{board}, headers: append(headers, field{"X-Restricted-Token", good})})

	ordinaryN, verdicts, checks := obs.snapshot()
	if ordinaryN != 1 {
		t.Errorf("ordinary = %d, want 1", ordinaryN)
	}
	want := [16]int{policy.NoToken: 1, policy.Unknown: 1, policy.Pass: 1}
	if verdicts != want {
		t.Errorf("verdicts by reason = %v, want %v", verdicts, want)
	}
	if checks != 2 { // the unknown subaddress token and the header token
		t.Errorf("%d token checks timed, want 2", checks)
	}
}
