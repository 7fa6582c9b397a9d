package bounce

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/rewrite"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// capture is a relay that takes everything and keeps it.
type capture struct {
	mu   sync.Mutex
	sent []sent
}

type sent struct {
	from  string
	rcpts []string
	data  []byte
}

func (c *capture) Send(_ context.Context, from string, rcpts []string, body func() io.Reader, report func([]relay.Result)) {
	b, _ := io.ReadAll(body())
	c.mu.Lock()
	c.sent = append(c.sent, sent{from, rcpts, b})
	c.mu.Unlock()
	rs := make([]relay.Result, len(rcpts))
	for i, r := range rcpts {
		rs[i] = relay.Result{Rcpt: r}
	}
	report(rs)
}

func (c *capture) all() []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sent(nil), c.sent...)
}

type fixture struct {
	db    *store.DB
	set   *delivery.Settings
	board *policy.List
	other *policy.List
	relay *capture
	key   dkimtest.Key
	h     *Handler
	tokID string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db, relay: &capture{}, key: dkimtest.NewKey(t, "ed25519", "example.org", "rm1")}
	f.board = &policy.List{Addr: address.MustParse("board@example.org"), Bounce: address.MustParse("board-bounces@example.org"), Name: "Board"}
	f.other = &policy.List{Addr: address.MustParse("events@example.org"), Bounce: address.MustParse("events-bounces@example.org"), Name: "Events",
		BounceForward: address.MustParse("owner@example.org")}
	rules := policy.NewRules("+", token.Finder{Prefix: "RMTOKEN"}, []*policy.List{f.board, f.other})
	f.set = &delivery.Settings{Rules: rules, Relay: f.relay, Hostname: "mx.example.org", ReportWindow: time.Hour,
		Keys: map[string]*rewrite.Key{"example.org": {Domain: "example.org", Selector: "rm1", Signer: f.key.Config.Signer}}}
	f.h = New(Options{Store: db})
	rec := token.Record{ID: token.NewID(), Hash: token.HashOf("t"), List: "board@example.org", Created: time.Now(), UsesAllowed: 5}
	if err := db.AddToken(ctx, rec); err != nil {
		t.Fatal(err)
	}
	f.tokID = rec.ID
	return f
}

// deliver records a completed delivery of board@ to rcpts, all delivered.
func (f *fixture) deliver(t *testing.T, id, tag, report string, rcpts ...string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	d := store.Delivery{ID: id, List: "board@example.org", TokenID: f.tokID, Sender: "alice@example.net", Created: now, Tag: tag, Report: report}
	if _, _, err := f.db.BeginDelivery(ctx, d, rcpts); err != nil {
		t.Fatal(err)
	}
	var outs []store.Outcome
	for _, r := range rcpts {
		outs = append(outs, store.Outcome{Rcpt: r, State: store.Delivered})
	}
	if err := f.db.RecordOutcomes(ctx, id, outs, now); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.FinishDelivery(ctx, id, "", now); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) handle(t *testing.T, l *policy.List, tag, file string) Result {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../dsn/testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.h.Handle(context.Background(), f.set, l, tag, Message{Body: bytes.NewReader(b), Size: int64(len(b))})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (f *fixture) state(t *testing.T, id, rcpt string) store.State {
	t.Helper()
	dd, err := f.db.DeliveryDetailOf(context.Background(), id, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range dd.Recipients {
		if strings.EqualFold(r.Rcpt, rcpt) {
			return r.State
		}
	}
	t.Fatalf("%s is no recipient of %s", rcpt, id)
	return 0
}

// TestHandle: a report with the delivery's tag is recorded; one with an
// unknown tag, with another list's tag, or naming a stranger changes
// nothing; an auto-reply is dropped; mail that is no report goes to the
// list's bounce_forward (null sender), or is dropped without one.
func TestHandle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.deliver(t, "d1", "abcdefghij", store.ReportNone, "m1@example.net", "m2@example.com", "carol@example.com")

	if res := f.handle(t, f.board, "zzzzzzzzzz", "rfc3464-failed.eml"); res != Ignored {
		t.Errorf("unknown tag: %s", res)
	}
	if res := f.handle(t, f.other, "abcdefghij", "rfc3464-failed.eml"); res != Ignored {
		t.Errorf("another list's bounce address: %s", res)
	}
	if st := f.state(t, "d1", "m1@example.net"); st != store.Delivered {
		t.Fatalf("a forged report changed m1 to %s", st)
	}
	if res := f.handle(t, f.board, "abcdefghij", "google.eml"); res != Ignored { // erin@ was no recipient
		t.Errorf("stranger: %s", res)
	}
	if res := f.handle(t, f.board, "abcdefghij", "vacation.eml"); res != AutoReply {
		t.Errorf("auto-reply: %s", res)
	}
	if res := f.handle(t, f.board, "abcdefghij", "rfc3464-failed.eml"); res != Recorded {
		t.Errorf("report: %s", res)
	}
	if res := f.handle(t, f.board, "abcdefghij", "exim-failed.eml"); res != Recorded {
		t.Errorf("exim: %s", res)
	}
	if res := f.handle(t, f.board, "abcdefghij", "rfc3464-delayed-two.eml"); res != Recorded {
		t.Errorf("delay: %s", res)
	}
	for rcpt, want := range map[string]store.State{"m1@example.net": store.Bounced, "carol@example.com": store.Bounced, "m2@example.com": store.Delayed} {
		if st := f.state(t, "d1", rcpt); st != want {
			t.Errorf("%s is %s, want %s", rcpt, st, want)
		}
	}
	if n := len(f.relay.all()); n != 0 {
		t.Fatalf("%d messages sent", n)
	}
	if res := f.handle(t, f.board, "", "plain-mail.eml"); res != Dropped {
		t.Errorf("plain mail without bounce_forward: %s", res)
	}
	if res := f.handle(t, f.other, "", "plain-mail.eml"); res != Forwarded {
		t.Errorf("plain mail with bounce_forward: %s", res)
	}
	s := f.relay.all()
	if len(s) != 1 || s[0].from != "" || len(s[0].rcpts) != 1 || s[0].rcpts[0] != "owner@example.org" || !bytes.Contains(s[0].data, []byte("Who runs this list?")) {
		t.Errorf("forwarded: %+v", s)
	}
}

// TestReporter: the due report is read from the store (as after a
// restart), sent once from the list's bounce address to the sender with
// the null envelope sender, auto-generated and DKIM-signed, and names the
// failed recipients; a "failures" report with nothing to say is not sent.
func TestReporter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.deliver(t, "d1", "abcdefghij", store.ReportSummary, "m1@example.net", "m2@example.com", "m3@example.com")
	f.deliver(t, "d2", "bcdefghijk", store.ReportFailures, "m1@example.net")
	if res := f.handle(t, f.board, "abcdefghij", "rfc3464-failed.eml"); res != Recorded {
		t.Fatalf("report: %s", res)
	}
	now := time.Now()
	r := NewReporter(ReportOptions{Store: f.db, Settings: func() *delivery.Settings { return f.set }, Now: func() time.Time { return now }})
	r.RunOnce(context.Background())
	r.RunOnce(context.Background())
	s := f.relay.all()
	if len(s) != 1 {
		t.Fatalf("%d reports sent, want 1 (d2 had nothing to report)", len(s))
	}
	m := s[0]
	text := string(m.data)
	if m.from != "" || len(m.rcpts) != 1 || m.rcpts[0] != "alice@example.net" {
		t.Errorf("envelope %q → %v", m.from, m.rcpts)
	}
	for _, want := range []string{"From: \"Board\" <board-bounces@example.org>", "Auto-Submitted: auto-generated", "reached 2 of 3 recipients",
		"m1@example.net (550 5.1.1"} {
		if !strings.Contains(strings.ReplaceAll(text, "=\r\n", ""), want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if got := dkimtest.VerifyGo(t, m.data, f.key); len(got) != 1 || got[0] != "example.org" {
		t.Errorf("DKIM: %v", got)
	}
	if due, _ := f.db.DueReports(context.Background(), now.Add(24*time.Hour), 10); len(due) != 0 {
		t.Errorf("still due: %+v", due)
	}
}
