package milter

import (
	"time"

	"github.com/restrictedmail/restrictedmail/policy"
)

// Observer is told what the milter decides, for metrics. Its methods run in
// the path of every message Postfix receives: they must not block and must
// not allocate, so that the ordinary path stays allocation-free
// (TestOrdinaryPathAllocatesNothing, with and without an observer). A nil
// Options.Observer means none.
type Observer interface {
	// MilterOrdinary is called for each message without a restricted
	// recipient, accepted at DATA: the milter's cheap path.
	MilterOrdinary()
	// MilterVerdict is called for each decision on restricted mail: a
	// recipient rejected at RCPT, or a message's final verdict.
	MilterVerdict(policy.Reason)
	// MilterTokenCheck is called after each token lookup with its duration.
	MilterTokenCheck(time.Duration)
}

// noObserver is the Observer of a Server built without one. It has no
// fields, so storing it in the interface allocates nothing.
type noObserver struct{}

func (noObserver) MilterOrdinary()                {}
func (noObserver) MilterVerdict(policy.Reason)    {}
func (noObserver) MilterTokenCheck(time.Duration) {}

// observeCheck reports the duration of a token lookup that began at start;
// it measures with the monotonic clock, not Options.Now.
func (s *Server) observeCheck(start time.Time) { s.obs.MilterTokenCheck(time.Since(start)) }
