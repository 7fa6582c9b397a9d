package delivery

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

// observe reports how o ended.
func (e *Engine) observe(o Outcome) {
	result := OutcomeDelivered
	switch {
	case o.Reply == nil:
	case o.Reply.Temporary():
		result = OutcomeDeferred
	default:
		result = OutcomeRefused
	}
	e.obs.LMTPDelivery(result, o.Duration)
	if o.GaveUp > 0 {
		e.obs.LMTPRecipients(0, o.GaveUp, 0)
	}
}

// observed wraps a relay report callback so that the observer counts the
// recipients' results as they arrive.
func (e *Engine) observed(report func([]relay.Result)) func([]relay.Result) {
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
		e.obs.LMTPRecipients(ok, failed, deferred)
		report(rs)
	}
}
