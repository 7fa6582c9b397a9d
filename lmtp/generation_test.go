package lmtp

import (
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/internal/generation"
)

// TestReloadBetweenMailAndData: a reload (a new generation: other lists,
// another relay) between MAIL and DATA does not reach the transaction under
// way — it is judged and sent with the generation of its MAIL, whole — and
// the next transaction gets the new one.
func TestReloadBetweenMailAndData(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	oldRelay, newRelay := e.relay, &fakeRelay{}
	var cur atomic.Pointer[delivery.Settings]
	cur.Store(e.settings())

	next := *e.cfg.Load()
	next.Lists = slices.Clone(next.Lists)
	next.Lists[0].Recipients = []string{"zoe@example.com"} // board's members change
	next.Lists = next.Lists[:1]                            // events goes away
	if p := config.Check(&next); p.HasErrors() {
		t.Fatal(p.Error())
	}
	newGen := generation.Settings(&next, generation.Rules(&next), newRelay)

	opts := e.options(slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	opts.Settings = cur.Load
	addr := e.serve(New(opts))

	tok := e.issue("board@example.org", nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.net", nil); err != nil {
		t.Fatal(err)
	}
	cur.Store(newGen) // SIGHUP
	for _, r := range []string{"board@example.org", "events@example.org"} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s under the generation of MAIL: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(message(tok, "")); err != nil {
		t.Fatal(err)
	}
	w.CloseWithLMTPResponse() // events has no token: refused; board delivered
	if got := oldRelay.delivered(); len(got) != len(members) {
		t.Errorf("the old generation's relay got %v, want the old members", got)
	}
	if got := newRelay.delivered(); len(got) != 0 {
		t.Errorf("the new generation's relay was used mid-transaction: %v", got)
	}

	// The next transaction: the new lists (events is gone) and relay.
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("events@example.org", nil); err == nil {
		t.Errorf("events@ accepted after the reload removed it")
	}
	tok2 := e.issue("board@example.org", nil)
	if err := c.Rcpt("board@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err = c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(message(tok2, "X-Second: yes\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		t.Fatal(err)
	}
	if got := newRelay.delivered(); got["zoe@example.com"] != 1 || len(got) != 1 {
		t.Errorf("the next transaction: new relay got %v, want zoe once", got)
	}
}
