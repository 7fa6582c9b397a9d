package e2e

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

// kill9 kills the daemon with SIGKILL, as the OOM killer or a power cut
// would, and waits for it to be gone.
func (a *audit) kill9() {
	a.t.Helper()
	p := a.w.rm
	if err := p.cmd.Process.Kill(); err != nil {
		a.t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		a.t.Fatal("restrictedmail did not die of SIGKILL")
	}
	p.once.Do(func() {}) // its cleanup must not expect a clean exit
}

// killMidFanOut runs one message to 60 members, 10 per relay transaction
// over one connection, and kills the daemon while the relay holds the
// third transaction's message: after the first two were answered and
// recorded in the journal. accept says whether the relay then takes that
// message (it had it whole: the daemon died before the relay's 250 reached
// it, the known window) or loses it (it crashed too). The daemon is
// restarted on the same configuration and store, and Postfix hands the
// message over again.
func killMidFanOut(t *testing.T, scenario string, accept bool) figures {
	// The killed daemon's lease of the delivery outlives it: the restarted
	// one (another lease owner) answers 451 until it expires.
	w := newWorld(t, worldOpts{milter: true, membersFile: 60, maxRecipients: 10, connections: 1,
		set: map[string]string{"lmtp.lease": `"3s"`}})
	a := newAudit(t, w, scenario)
	tok := a.issue(1)[0]
	var n atomic.Int32
	held := make(chan struct{})
	release := make(chan error, 1)
	t.Cleanup(func() {
		select {
		case release <- errors.New("test over"):
		default:
		}
	})
	w.relay.SetDataHook(func(testsmtp.Message) error {
		if n.Add(1) != 3 {
			return nil
		}
		close(held)
		return <-release
	})
	a.submit(tok, "part", "deliver")
	select {
	case <-held:
	case <-time.After(waitMail):
		t.Fatal("the fan-out never reached its third transaction")
	}
	until(t, time.Now().Add(waitMail), "the journal records the first two transactions", func() bool {
		return delivered(t, w.db) == 20
	})
	a.kill9()
	if accept {
		release <- nil
		w.relay.WaitRecipients(t, 30, waitMail)
	} else {
		release <- errors.New("the relay crashed too")
	}
	w.relay.SetDataHook(nil)
	a.restart(w.conf)
	a.settle(settleTime)
	if got := delivered(t, w.db); got != 60 {
		t.Errorf("the journal records %d delivered, want 60", got)
	}
	return a.report(10)
}

// TestFaultKill9MidFanOut: kill -9 between two relay transactions of a
// fan-out, then a restart: the journal resumes where it stopped, nobody
// gets a copy twice, nobody none.
func TestFaultKill9MidFanOut(t *testing.T) {
	t.Parallel()
	if f := killMidFanOut(t, "kill-9-mid-fan-out", false); f.duplicated != 0 {
		t.Errorf("%d duplicates: a killed daemon resent what its journal had recorded", f.duplicated)
	}
}

// TestFaultKill9InTheWindow: kill -9 while the relay holds a transaction's
// message, which it then accepts: the relay's 250 never reaches the
// journal (the known window between the relay's reply and the journal's
// commit), so that transaction's ten recipients get their copy again after
// the restart. Ten duplicates, measured and reported; no loss.
func TestFaultKill9InTheWindow(t *testing.T) {
	t.Parallel()
	if f := killMidFanOut(t, "kill-9-in-the-window", true); f.duplicated != 10 {
		t.Errorf("%d duplicates; the window predicts the one transaction in flight (10)", f.duplicated)
	}
}
