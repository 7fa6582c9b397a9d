package e2e

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/pgtest"
	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
)

// TestFaultPostgresStopped: the PostgreSQL store stops (a crash of the
// database server) and comes back, restrictedmail keeps running. Two
// messages passed the milter before; Postfix holds them (defer_transports)
// until the database is down, so the LMTP endpoint meets the outage at
// the spend: 451 4.3.0, Postfix keeps them. A message submitted during
// the outage meets it at the milter's check: 451 4.3.0 at SMTP time, the
// client keeps it and sends it again later. Once PostgreSQL is back every
// message reaches every member once.
func TestFaultPostgresStopped(t *testing.T) {
	t.Parallel()
	postfixtest.Require(t)
	pg := pgtest.New(t) // its own cluster: this test stops it
	w := newWorld(t, worldOpts{milter: true, storeURL: pg.NewDB(t), mainCF: map[string]string{"defer_transports": "lmtp"}})
	a := newAudit(t, w, "postgres-stopped")
	toks := a.issue(3)
	for i, tok := range toks[:2] {
		if m := a.submit(tok, carrier(i), "deliver"); m.res.Data != nil {
			t.Fatalf("milter with PostgreSQL up: %v", m.res.Data)
		}
	}
	w.pf.WaitQueue(t, waitMail, func(q []postfixtest.QueueEntry) bool { return len(q) == 2 && quiescent(q) })

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	// The milter's check.
	m := a.submit(toks[2], "part", "deliver")
	var se *smtp.SMTPError
	if !errors.As(m.res.Data, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
		t.Errorf("milter with PostgreSQL down: %v; want 451 4.3.0", m.res.Data)
	}
	// The spend.
	w.pf.Flush(t)
	w.pf.WaitQueue(t, waitMail, func(q []postfixtest.QueueEntry) bool {
		for _, e := range q {
			if e.QueueName != "deferred" || len(e.Recipients) == 0 || !strings.Contains(e.Recipients[0].DelayReason, " 4.3.0 ") {
				return false
			}
		}
		return len(q) == 2
	})
	if n := len(w.relay.Recipients()); n != 0 {
		t.Errorf("%d copies sent with PostgreSQL down", n)
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	// The client sends its refused message again; Postfix retries the
	// others (settle flushes). A pooled connection that died with the
	// server may cost one more deferral: settle retries until the queue
	// is empty.
	if m := a.submit(toks[2], "part", "deliver"); m.res.Data != nil {
		// The first statement on a dead pooled connection fails once.
		if m := a.submit(toks[2], "header", "deliver"); m.res.Data != nil {
			t.Errorf("milter after PostgreSQL restarted: %v", m.res.Data)
		}
	}
	a.settle(settleTime)
	a.report(0)
}
