package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/corpus"
	"github.com/restrictedmail/restrictedmail/store"
)

// TestCorpusThroughPostfix sends the whole hostile corpus
// (internal/corpus) through a real Postfix, the milter and the LMTP
// endpoint of the real binary, logging at debug level. Postfix takes what
// the milter passes and refuses the rest at SMTP time; what it takes is
// delivered to every member or bounced to the sender, as the manifest
// says. No token, token file line or base64 token file appears in any
// copy or in any line of the daemon's log.
//
// Postfix's own maillog does show a subaddress token
// (to=<board@example.org>, orig_to=<board+TOKEN@example.org>): that is
// Postfix's log, not ours, and the README says so.
func TestCorpusThroughPostfix(t *testing.T) {
	t.Parallel()
	cases, err := corpus.Load()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, worldOpts{milter: true})
	a := newAudit(t, w, "corpus-through-postfix")
	a.secrets = append(a.secrets, corpus.Secrets()...)
	db, err := store.Open(context.Background(), w.db)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range corpus.Records(time.Now()) {
		if err := db.AddToken(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	for _, c := range cases {
		raw, err := c.Message()
		if err != nil {
			t.Fatal(err)
		}
		m := &tracked{id: "corpus-" + c.Name + "@example.net", want: "deliver"}
		if c.LMTP != "pass" {
			m.want = "bounce"
		}
		m.res = w.submit(corpus.Sender, []string{c.Rcpt}, raw)
		refused := m.res.Mail != nil || m.res.Data != nil || m.res.Rcpt[c.Rcpt] != nil
		if refused != (c.Milter != "pass") {
			t.Errorf("%s: Postfix refused: %v (RCPT %v, DATA %v); the milter's verdict should be %s",
				c.Name, refused, m.res.Rcpt[c.Rcpt], m.res.Data, c.Milter)
		}
		if m.res.Data == nil && m.res.Rcpt[c.Rcpt] != nil {
			m.res.Data = m.res.Rcpt[c.Rcpt] // refused at RCPT: nothing queued
		}
		a.msgs = append(a.msgs, m)
	}
	a.settle(settleTime)
	f := a.report(0)
	if f.accepted == 0 || f.refused == 0 {
		t.Errorf("%d accepted, %d refused: the corpus did not exercise both", f.accepted, f.refused)
	}
	if !strings.Contains(w.pf.Log(), "board+"+corpus.Valid+"@example.org") {
		t.Errorf("Postfix's maillog does not show the subaddress; the README says it does")
	}
}
