package lmtp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// fakeRelay records what it is asked to send and answers per recipient.
type fakeRelay struct {
	mu     sync.Mutex
	sends  []sent
	got    map[string]int                 // copies accepted per recipient
	answer func(rcpt string) *relay.Error // nil: delivered
	block  chan struct{}                  // when set, Send waits on it (or ctx)
}

type sent struct {
	from  string
	rcpts []string
	body  []byte
}

func (f *fakeRelay) Send(ctx context.Context, from string, rcpts []string, body func() io.Reader, report func([]relay.Result)) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			rs := make([]relay.Result, len(rcpts))
			for i, r := range rcpts {
				rs[i] = relay.Result{Rcpt: r, Err: &relay.Error{Temporary: true, Stage: "connect", Message: "cancelled"}}
			}
			report(rs)
			return
		}
	}
	b, _ := io.ReadAll(body())
	f.mu.Lock()
	f.sends = append(f.sends, sent{from: from, rcpts: append([]string(nil), rcpts...), body: b})
	f.mu.Unlock()
	for i := 0; i < len(rcpts); i += 2 { // small batches, to exercise group commit
		var rs []relay.Result
		for _, r := range rcpts[i:min(i+2, len(rcpts))] {
			var e *relay.Error
			if f.answer != nil {
				e = f.answer(r)
			}
			if e == nil {
				f.mu.Lock()
				if f.got == nil {
					f.got = map[string]int{}
				}
				f.got[r]++
				f.mu.Unlock()
			}
			rs = append(rs, relay.Result{Rcpt: r, Err: e})
		}
		report(rs)
	}
}

// delivered returns how many copies each recipient was accepted for.
func (f *fakeRelay) delivered() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.got)
}

type env struct {
	t     *testing.T
	cfg   atomic.Pointer[config.Config]
	db    *store.DB
	relay *fakeRelay
	srv   *Server
	addr  string
	now   atomic.Pointer[time.Time]
}

var members = []string{"alice@example.net", "bob@example.com", "carol@example.com", "dave@example.com", "erin@example.com"}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.File = filepath.Join(dir, "rm.toml")
	cfg.Hostname = "mx.example.org"
	cfg.Store.Path = filepath.Join(dir, "state.db")
	cfg.LMTP.Listen = "inet:127.0.0.1:0"
	cfg.Milter.Listen = ""
	cfg.LMTP.MaxMessageSize = 1 << 20
	cfg.Tokens.Prefix = "LEGOTOKEN"
	cfg.Lists = []config.List{
		{Address: "board@example.org", Name: "Board", Recipients: members, BounceAddress: "board-bounces@example.org"},
		{Address: "events@example.org", Name: "Events", BounceAddress: "events-bounces@example.org"},
	}
	if p := config.Check(cfg); p.HasErrors() {
		t.Fatal(p.Error())
	}
	db, err := store.Open(context.Background(), cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db, relay: &fakeRelay{}}
	e.cfg.Store(cfg)
	now := time.Now()
	e.now.Store(&now)
	e.srv = New(e.options(slog.New(slog.NewTextHandler(testWriter{t}, nil))))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	go e.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
	})
	return e
}

// options are the endpoint's options for e's configuration, relay, store
// and clock, as the daemon maps them.
func (e *env) options(logger *slog.Logger) Options {
	cfg := e.cfg.Load()
	return Options{
		Settings: e.settings, Store: e.db, Logger: logger, Now: func() time.Time { return *e.now.Load() },
		Hostname: cfg.Hostname, MaxMessageSize: cfg.LMTP.MaxMessageSize, MaxRecipients: cfg.LMTP.MaxRecipients,
		ReadTimeout: cfg.LMTP.ReadTimeout.D(), WriteTimeout: cfg.LMTP.WriteTimeout.D(),
	}
}

// settings is the generation of e's configuration in force.
func (e *env) settings() *delivery.Settings {
	cfg := e.cfg.Load()
	return generation.Settings(cfg, generation.Rules(cfg), e.relay)
}

func (e *env) advance(d time.Duration) {
	n := e.now.Load().Add(d)
	e.now.Store(&n)
}

// issue stores a token for list and returns it.
func (e *env) issue(list string, mod func(*token.Record)) string {
	e.t.Helper()
	tok := token.Generate()
	rec := token.Record{ID: token.NewID(), Hash: token.HashOf(tok), List: list, Created: time.Now().UTC(), UsesAllowed: 1}
	if mod != nil {
		mod(&rec)
	}
	if err := e.db.AddToken(context.Background(), rec); err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// message builds a message whose token file (prefix LEGOTOKEN) is its last part.
func message(tok string, extraHeader string) []byte {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.net>\r\nTo: board@example.org\r\nSubject: hello\r\nMessage-ID: <" + token.NewID() + "@example.net>\r\n" + extraHeader +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nHello board.\r\n")
	if tok != "" {
		b.WriteString("--b1\r\nContent-Type: text/plain; name=token.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64.StdEncoding.EncodeToString([]byte("LEGOTOKEN"+tok+"\n")) + "\r\n")
	}
	b.WriteString("--b1--\r\n")
	return []byte(b.String())
}

// lmtpSend runs one LMTP transaction and returns the reply per recipient
// ("250", "550 5.7.1 ...") and the RCPT errors.
func (e *env) lmtpSend(from string, rcpts []string, msg []byte) (map[string]string, map[string]error) {
	e.t.Helper()
	replies, rcptErrs, err := e.lmtpTry(from, rcpts, msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return replies, rcptErrs
}

// lmtpTry is lmtpSend for goroutines other than the test's, which must not
// call t.Fatal: it returns the failure instead.
func (e *env) lmtpTry(from string, rcpts []string, msg []byte) (map[string]string, map[string]error, error) {
	return lmtpTryAt(e.addr, from, rcpts, msg)
}

// lmtpTryAt is lmtpTry to the endpoint at addr.
func lmtpTryAt(addr, from string, rcpts []string, msg []byte) (map[string]string, map[string]error, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		return nil, nil, fmt.Errorf("LHLO: %w", err)
	}
	if err := c.Mail(from, nil); err != nil {
		return nil, nil, fmt.Errorf("MAIL: %w", err)
	}
	rcptErrs := map[string]error{}
	accepted := 0
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			rcptErrs[r] = err
			continue
		}
		accepted++
	}
	replies := map[string]string{}
	if accepted == 0 {
		return replies, rcptErrs, nil
	}
	w, err := c.Data()
	if err != nil {
		return nil, nil, fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return nil, nil, fmt.Errorf("DATA: %w", err)
	}
	resps, err := w.CloseWithLMTPResponse()
	if err != nil {
		var le smtp.LMTPDataError
		if !errors.As(err, &le) {
			return nil, nil, fmt.Errorf("DATA: %w", err)
		}
		for r, se := range le {
			// go-smtp puts "<rcpt> " before the text of each LMTP reply.
			msg := strings.TrimPrefix(se.Message, "<"+r+"> ")
			replies[r] = fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], msg)
		}
	}
	for r := range resps {
		replies[r] = "250"
	}
	return replies, rcptErrs, nil
}

func (e *env) spent(tok string) int {
	e.t.Helper()
	rec, err := e.db.TokenByHash(context.Background(), token.HashOf(tok))
	if err != nil {
		e.t.Fatal(err)
	}
	return rec.UsesSpent
}

func TestRcptOnlyRestricted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, errs := e.lmtpSend("a@example.net", []string{"someone@example.org", "board@example.com", "board@example.org", "board+abc@example.org", "Board@EXAMPLE.org"}, message("", ""))
	for _, r := range []string{"someone@example.org", "board@example.com"} {
		var se *smtp.SMTPError
		if !errors.As(errs[r], &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
			t.Errorf("RCPT %s: %v, want 550 5.1.1", r, errs[r])
		}
	}
	for _, r := range []string{"board@example.org", "board+abc@example.org", "Board@EXAMPLE.org"} {
		if errs[r] != nil {
			t.Errorf("RCPT %s refused: %v", r, errs[r])
		}
	}
}

// bounceTagged is the copies' envelope sender: the bounce address with a
// delivery tag (VERP).
var bounceTagged = regexp.MustCompile(`^board-bounces\+[a-z2-7]{10}@example\.org$`)

func TestValidTokenDeliversOnceToEveryMember(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.issue("board@example.org", nil)
	msg := message(tok, "")
	replies, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg)
	if replies["board@example.org"] != "250" {
		t.Fatalf("reply %q, want 250", replies)
	}
	if len(e.relay.sends) != 1 {
		t.Fatalf("%d sends, want 1", len(e.relay.sends))
	}
	s := e.relay.sends[0]
	if !bounceTagged.MatchString(s.from) {
		t.Errorf("envelope sender %q, want the bounce address with the delivery's tag", s.from)
	}
	if strings.Join(s.rcpts, ",") != strings.Join(members, ",") {
		t.Errorf("recipients %v, want %v", s.rcpts, members)
	}
	if bytes.Contains(s.body, []byte(tok)) || bytes.Contains(s.body, []byte("TEVHT1RPS0VO")) {
		t.Errorf("the token is in the copy")
	}
	if !bytes.Contains(s.body, []byte("From: \"Alice via Board\" <board@example.org>")) {
		t.Errorf("From not rewritten:\n%s", s.body)
	}
	if n := e.spent(tok); n != 1 {
		t.Errorf("token spent %d times, want 1", n)
	}
	// Postfix hands the same message over again (it missed our 250):
	// nothing is sent twice and the token is not spent again.
	replies, _ = e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg)
	if replies["board@example.org"] != "250" || len(e.relay.sends) != 1 || e.spent(tok) != 1 {
		t.Errorf("second hand-over: reply %v, %d sends, spent %d; want 250, 1, 1", replies, len(e.relay.sends), e.spent(tok))
	}
}

func TestRejections(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	past := time.Now().Add(-time.Hour)
	cases := []struct {
		name, tok, want string
	}{
		{"no token", "", "550 5.7.1 No posting token found"},
		{"unknown", "nosuchtoken", "550 5.7.1 Unknown posting token"},
		{"expired", e.issue("board@example.org", func(r *token.Record) { r.Expires = past }), "550 5.7.1 Posting token expired"},
		{"used", e.issue("board@example.org", func(r *token.Record) { r.UsesSpent = 1 }), "550 5.7.1 Posting token already used"},
		{"revoked", e.issue("board@example.org", func(r *token.Record) { r.Revoked = true }), "550 5.7.1 Posting token revoked"},
		{"sender", e.issue("board@example.org", func(r *token.Record) { r.Sender = "bob@example.com" }), "550 5.7.1 Posting token not valid for this sender"},
		{"list", e.issue("events@example.org", func(r *token.Record) { r.Recipients = []string{"x@example.net"} }), "550 5.7.1 Posting token not valid for this address"},
	}
	for _, c := range cases {
		replies, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, message(c.tok, ""))
		if got := replies["board@example.org"]; !strings.HasPrefix(got, c.want) || !strings.Contains(got, "<board@example.org>") {
			t.Errorf("%s: reply %q, want %q… naming the list", c.name, got, c.want)
		}
	}
	if len(e.relay.sends) != 0 {
		t.Errorf("%d sends for rejected messages", len(e.relay.sends))
	}
}

func TestSenderBindingMatchesFromHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.issue("board@example.org", func(r *token.Record) { r.Sender = "alice@example.net" })
	// A forwarder rewrote the envelope sender; the From field still matches.
	replies, _ := e.lmtpSend("srs0=xyz@forwarder.example", []string{"board@example.org"}, message(tok, ""))
	if replies["board@example.org"] != "250" {
		t.Errorf("reply %v, want 250", replies)
	}
}

func TestSubaddressAndHeaderCarriers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.issue("board@example.org", func(r *token.Record) { r.UsesAllowed = 2 })
	replies, _ := e.lmtpSend("alice@example.net", []string{"board+" + tok + "@example.org"}, message("", ""))
	if replies["board+"+tok+"@example.org"] != "250" {
		t.Errorf("subaddress carrier: %v", replies)
	}
	replies, _ = e.lmtpSend("alice@example.net", []string{"board@example.org"}, message("", "X-Restricted-Token: "+tok+"\r\n"))
	if replies["board@example.org"] != "250" {
		t.Errorf("header carrier: %v", replies)
	}
	for _, s := range e.relay.sends {
		if bytes.Contains(bytes.ToLower(s.body), []byte(tok)) {
			t.Errorf("the token is in a copy:\n%s", s.body)
		}
	}
}

func TestPerRecipientRepliesAcrossLists(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.issue("board@example.org", nil)
	replies, _ := e.lmtpSend("alice@example.net", []string{"board@example.org", "events@example.org", "board+" + tok + "@example.org"}, message(tok, ""))
	if replies["board@example.org"] != "250" || replies["board+"+tok+"@example.org"] != "250" {
		t.Errorf("board: %v", replies)
	}
	if !strings.HasPrefix(replies["events@example.org"], "550 5.7.1 Posting token not valid for this address") {
		t.Errorf("events: %q", replies["events@example.org"])
	}
	if len(e.relay.sends) != 1 || e.spent(tok) != 1 {
		t.Errorf("%d sends, spent %d; want one delivery for board", len(e.relay.sends), e.spent(tok))
	}
}

func TestTemporaryFailuresResumeWithPendingOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.issue("board@example.org", nil)
	down := map[string]bool{"bob@example.com": true, "dave@example.com": true}
	var mu sync.Mutex
	e.relay.answer = func(r string) *relay.Error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r == "erin@example.com":
			return &relay.Error{Code: 550, Enhanced: [3]int{5, 1, 1}, Stage: "rcpt", Message: "no such user"}
		case down[r]:
			return &relay.Error{Temporary: true, Code: 451, Stage: "rcpt", Message: "try later"}
		}
		return nil
	}
	msg := message(tok, "")
	replies, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg)
	if got := replies["board@example.org"]; !strings.HasPrefix(got, "451 4.4.1") {
		t.Fatalf("reply %q, want 451 4.4.1", got)
	}
	mu.Lock()
	down = map[string]bool{}
	mu.Unlock()
	replies, _ = e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg)
	if got := replies["board@example.org"]; got != "250" {
		t.Fatalf("second hand-over: %q, want 250", got)
	}
	if len(e.relay.sends) != 2 || strings.Join(e.relay.sends[1].rcpts, ",") != "bob@example.com,dave@example.com" {
		t.Errorf("second hand-over sent to %v, want only the pending bob and dave", e.relay.sends[len(e.relay.sends)-1].rcpts)
	}
	for _, m := range members {
		want := 1
		if m == "erin@example.com" {
			want = 0
		}
		if got := e.relay.delivered()[m]; got != want {
			t.Errorf("%s received %d copies, want %d", m, got, want)
		}
	}
	if e.spent(tok) != 1 {
		t.Errorf("token spent %d times", e.spent(tok))
	}
}

func TestGiveUpAfterAge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.issue("board@example.org", nil)
	e.relay.answer = func(string) *relay.Error { return &relay.Error{Temporary: true, Stage: "connect", Message: "refused"} }
	msg := message(tok, "")
	if r, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg); !strings.HasPrefix(r["board@example.org"], "451") {
		t.Fatalf("reply %v, want 451", r)
	}
	e.advance(e.cfg.Load().LMTP.GiveUpAfter.D() + time.Minute)
	if r, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg); r["board@example.org"] != "250" {
		t.Fatalf("after give_up_after: %v, want 250", r)
	}
	if len(e.relay.sends) != 1 {
		t.Errorf("%d sends; an expired delivery must not be sent again", len(e.relay.sends))
	}
	id := delivery.ID(e.cfg.Load().Lists[0].Addr, "alice@example.net", sumBytes(msg))
	c, err := e.db.DeliveryCounts(context.Background(), id)
	if err != nil || c.Failed != len(members) || c.Pending != 0 {
		t.Errorf("counts %+v, %v; want all failed", c, err)
	}
}

func TestLoopAndSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.issue("board@example.org", nil)
	replies, _ := e.lmtpSend("board-bounces@example.org", []string{"board@example.org"}, message(tok, "X-Loop: board@example.org\r\n"))
	if got := replies["board@example.org"]; !strings.HasPrefix(got, "554 5.4.6") {
		t.Errorf("loop: %q, want 554 5.4.6", got)
	}
	big := message(tok, strings.Repeat("X-Big: "+strings.Repeat("x", 900)+"\r\n", 1300))
	replies, _ = e.lmtpSend("alice@example.net", []string{"board@example.org"}, big)
	if got := replies["board@example.org"]; !strings.HasPrefix(got, "552 5.3.4") {
		t.Errorf("oversized: %q, want 552 5.3.4", got)
	}
	if len(e.relay.sends) != 0 || e.spent(tok) != 0 {
		t.Errorf("sends %d, spent %d; want none", len(e.relay.sends), e.spent(tok))
	}
}

func TestConcurrentHandOversSendOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.issue("board@example.org", nil)
	msg := message(tok, "")
	var wg sync.WaitGroup
	results := make([]string, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := e.lmtpTry("alice@example.net", []string{"board@example.org"}, msg)
			if err != nil {
				t.Error(err)
			}
			results[i] = r["board@example.org"]
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r != "250" {
			t.Errorf("hand-over %d: %q", i, r)
		}
	}
	for _, m := range members {
		if n := e.relay.delivered()[m]; n != 1 {
			t.Errorf("%s got %d copies", m, n)
		}
	}
}

func TestShutdownCancelsDeliveriesInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.relay.block = make(chan struct{})
	tok := e.issue("board@example.org", nil)
	done := make(chan map[string]string)
	go func() {
		r, _, err := e.lmtpTry("alice@example.net", []string{"board@example.org"}, message(tok, ""))
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	// The delivery is in the relay once its token is spent.
	waitFor(t, func() bool { return e.spent(tok) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Error("Shutdown with a delivery stuck in flight returned nil")
	}
	if r := <-done; !strings.HasPrefix(r["board@example.org"], "451") {
		t.Errorf("cancelled delivery answered %v, want 451 (Postfix keeps the message)", r)
	}
}

func sumBytes(b []byte) [sha256.Size]byte { return sha256.Sum256(b) }

// waitFor waits until cond holds, failing the test after a deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		<-tick.C
	}
}

// testWriter sends the server's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestPreviewMatchesDelivery: the dry run writes the copy a delivery sends
// (DKIM timestamp and signature aside), names the same recipients, and
// spends nothing.
func TestPreviewMatchesDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := dkimtest.NewKey(t, "ed25519", "example.org", "rm1")
	cfg := *e.cfg.Load()
	cfg.Lists = slices.Clone(cfg.Lists) // Check writes into them; the endpoint reads the ones in force
	cfg.DKIM = []config.DKIM{key.Config}
	if p := config.Check(&cfg); p.HasErrors() {
		t.Fatal(p.Error())
	}
	e.cfg.Store(&cfg)
	tok := e.issue("board@example.org", nil)
	msg := message(tok, "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n")

	p := e.preview("alice@example.net", "board@example.org", msg)
	if !p.Verdict.OK() || p.Reply != "250 2.0.0 OK" || strings.Join(p.Recipients, ",") != strings.Join(members, ",") {
		t.Fatalf("preview %+v", p)
	}
	if e.spent(tok) != 0 {
		t.Fatalf("the preview spent the token")
	}
	if r, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg); r["board@example.org"] != "250" {
		t.Fatalf("delivery: %v", r)
	}
	sentCopy := e.relay.sends[0].body
	dkimtest.VerifyGo(t, sentCopy, key)
	dkimtest.VerifyGo(t, p.Copy, key)
	if a, b := withoutDKIM(p.Copy), withoutDKIM(sentCopy); !bytes.Equal(a, b) {
		t.Errorf("preview and delivery differ:\npreview:\n%s\nsent:\n%s", a, b)
	}

	p = e.preview("alice@example.net", "board@example.org", msg)
	if p.Verdict.Reason != policy.UsedUp || !strings.HasPrefix(p.Reply, "550 5.7.1") || p.Copy != nil {
		t.Errorf("preview of a spent token: %+v", p)
	}
}

// preview is the engine's dry run of msg from from to rcpt with e's
// configuration, store and clock.
func (e *env) preview(from, rcpt string, msg []byte) delivery.Preview {
	e.t.Helper()
	set := *e.settings()
	set.SpoolDir = e.t.TempDir()
	rc, err := set.Rules.Resolve(rcpt)
	if err != nil || rc.List == nil {
		e.t.Fatalf("%s: %v", rcpt, err)
	}
	var sender address.Address
	if from != "" {
		sender = address.MustParse(from)
	}
	m := delivery.Message{From: from, Sender: sender, Body: bytes.NewReader(msg), Size: int64(len(msg)), Sum: sha256.Sum256(msg)}
	return delivery.DryRun(context.Background(), &set, e.db, m, policy.GroupByList([]policy.Recipient{rc})[0], *e.now.Load())
}

// withoutDKIM drops the DKIM-Signature field, whose t= and b= differ
// between two signings of the same copy.
func withoutDKIM(msg []byte) []byte {
	i := bytes.Index(msg, []byte("\r\nFrom: "))
	if !bytes.HasPrefix(msg, []byte("DKIM-Signature:")) || i < 0 {
		return msg
	}
	return msg[i+2:]
}

// TestResumedDeliveryScrubsTheSubaddressToken: a delivery whose token came
// as a subaddress, and that Postfix hands over again for the recipients the
// relay deferred, scrubs that token from the copy on the second hand-over
// too (the sender also pasted it into the text).
func TestResumedDeliveryScrubsTheSubaddressToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.issue("board@example.org", nil)
	var down atomic.Bool
	down.Store(true)
	e.relay.answer = func(r string) *relay.Error {
		if r == "bob@example.com" && down.Load() {
			return &relay.Error{Temporary: true, Code: 451, Stage: "rcpt", Message: "try later"}
		}
		return nil
	}
	msg := []byte("From: Alice <alice@example.net>\r\nTo: board@example.org\r\nSubject: hi\r\nMessage-ID: <resume-scrub@example.net>\r\n\r\nMy token is " + tok + ".\r\n")
	rcpt := "board+" + tok + "@example.org"
	if replies, _ := e.lmtpSend("alice@example.net", []string{rcpt}, msg); !strings.HasPrefix(replies[rcpt], "451") {
		t.Fatalf("first hand-over: %q, want 451", replies[rcpt])
	}
	down.Store(false)
	if replies, _ := e.lmtpSend("alice@example.net", []string{rcpt}, msg); replies[rcpt] != "250" {
		t.Fatalf("second hand-over: %q, want 250", replies[rcpt])
	}
	for i, s := range e.relay.sends {
		if strings.Contains(strings.ToLower(string(s.body)), strings.ToLower(tok)) {
			t.Errorf("hand-over %d: the copy holds the token", i+1)
		}
	}
}
