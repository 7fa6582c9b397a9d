package e2e

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

// TestFaultRelayFlappingBurst: a burst of 200 tokened messages (two
// members each, one recipient per relay transaction, so that a message can
// be half delivered) while the relay flaps: it refuses connections, drops
// them after a message, answers 421 instead of its greeting and 451 after
// a message, in turns every few milliseconds. Once it is stable again and
// Postfix has retried, each member has each message exactly once.
func TestFaultRelayFlappingBurst(t *testing.T) {
	t.Parallel()
	const burst = 200
	w := newWorld(t, worldOpts{milter: true, members: []string{"f1@example.net", "f2@example.com"}, maxRecipients: 1, connections: 2})
	a := newAudit(t, w, "relay-flapping-burst-200")
	toks := a.issue(burst)

	var (
		phase    atomic.Int32 // which fault is on
		flips    atomic.Int32
		stop     = make(chan struct{})
		stopOnce sync.Once
		flapping sync.WaitGroup
	)
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	t.Cleanup(halt)
	w.relay.SetConnectHook(func(int) *smtp.SMTPError {
		if phase.Load() == 2 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "flapping"}
		}
		return nil
	})
	w.relay.SetDataHook(func(testsmtp.Message) error {
		if phase.Load() == 3 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "flapping"}
		}
		return nil
	})
	// The fault injector: a fault, not a synchronisation, hence the ticker.
	flapping.Go(func() {
		tick := time.NewTicker(7 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p := int32(i % 5)
			switch p {
			case 1:
				w.relay.Refuse()
			case 4:
				w.relay.DropAfter(0)
			default:
				w.relay.Resume()
			}
			phase.Store(p)
			flips.Add(1)
		}
	})
	for i, tok := range toks {
		m := a.submit(tok, carrier(i), "deliver")
		if m.res.Data != nil {
			t.Fatalf("%s: Postfix refused: %v", m.id, m.res.Data)
		}
	}
	halt()
	flapping.Wait()
	phase.Store(0)
	w.relay.Resume()
	w.relay.DropAfter(-1)
	a.settle(3 * time.Minute)
	f := a.report(0)
	deferred := len(w.rm.log.lines("component=lmtp", "result=4"))
	t.Logf("%d flips of the relay; %d hand-overs answered 4xx; %d copies", flips.Load(), deferred, len(w.relay.Recipients()))
	if deferred == 0 {
		t.Error("no delivery was deferred: the relay did not flap during the burst")
	}
	if f.accepted != burst {
		t.Errorf("%d of %d accepted", f.accepted, burst)
	}
}
