package lmtp

import (
	"time"

	"github.com/restrictedmail/restrictedmail/relay"
)

// Observer is told how deliveries end, for metrics. A nil Options.Observer
// means none. Its methods are called from the delivery goroutines, possibly
// concurrently; they must not block.
type Observer interface {
	// LMTPDelivery is called once per delivery attempt (one restricted
	// address of one hand-over) with its outcome (OutcomeDelivered,
	// OutcomeDeferred, OutcomeRefused) and duration.
	LMTPDelivery(outcome string, d time.Duration)
	// LMTPRecipients is called as recipients' results arrive: taken by the
	// relay, failed for good (refused, or given up after give_up_after), or
	// deferred (a temporary failure: they stay pending for the next
	// hand-over).
	LMTPRecipients(delivered, failed, deferred int)
}

// Delivery outcomes, by the reply the recipients got.
const (
	OutcomeDelivered = "delivered" // 250: complete (also when already complete)
	OutcomeDeferred  = "deferred"  // 4xx: Postfix keeps the message and hands it over again
	OutcomeRefused   = "refused"   // 5xx: a verdict (no token, used up, loop, ...)
)

type noObserver struct{}

func (noObserver) LMTPDelivery(string, time.Duration) {}
func (noObserver) LMTPRecipients(int, int, int)       {}

// observeDelivery reports o, which began at start (monotonic clock, not
// Options.Now).
func (s *Server) observeDelivery(o *outcome, start time.Time) {
	result := OutcomeDelivered
	switch {
	case o.reply == nil:
	case o.reply.Code/100 == 4:
		result = OutcomeDeferred
	default:
		result = OutcomeRefused
	}
	s.obs.LMTPDelivery(result, time.Since(start))
	if o.gaveUp > 0 {
		s.obs.LMTPRecipients(0, o.gaveUp, 0)
	}
}

// observed wraps a relay report callback so that the observer counts the
// recipients' results as they arrive.
func (s *Server) observed(report func([]relay.Result)) func([]relay.Result) {
	return func(rs []relay.Result) {
		var ok, failed, deferred int
		for _, r := range rs {
			switch {
			case r.Err == nil:
				ok++
			case r.Err.Temporary:
				deferred++
			default:
				failed++
			}
		}
		s.obs.LMTPRecipients(ok, failed, deferred)
		report(rs)
	}
}
