package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

const (
	bounce  = "list-bounces@example.org"
	message = "From: a@example.org\r\nSubject: test\r\n\r\nbody line\r\n.line with a leading dot\r\n"
)

// relayConfig points at srv in plain text; tests change what they need.
func relayConfig(srv *testsmtp.Server) Options {
	return Options{
		Address:        srv.Addr(),
		TLS:            "none",
		HeloName:       "rm.example.org",
		MaxRecipients:  50,
		Connections:    4,
		ConnectTimeout: 10 * time.Second,
		CommandTimeout: 30 * time.Second,
	}
}

func newClient(t testing.TB, cfg Options) *Client {
	t.Helper()
	c, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// sendResult is what a Send reported, checked against the contract: report
// never concurrent, never after Send returned, every recipient once.
type sendResult struct {
	calls  [][]Result
	byRcpt map[string]*Error
}

func send(t *testing.T, ctx context.Context, c *Client, rcpts []string, body string) sendResult {
	t.Helper()
	return sendFrom(t, ctx, c, bounce, rcpts, body)
}

func sendFrom(t *testing.T, ctx context.Context, c *Client, from string, rcpts []string, body string) sendResult {
	t.Helper()
	var (
		mu       sync.Mutex
		active   atomic.Int32
		returned atomic.Bool
		res      = sendResult{byRcpt: map[string]*Error{}}
		problems []string
	)
	c.Send(ctx, from, rcpts, func() io.Reader { return strings.NewReader(body) }, func(rs []Result) {
		if active.Add(1) != 1 {
			mu.Lock()
			problems = append(problems, "report called concurrently")
			mu.Unlock()
		}
		defer active.Add(-1)
		if returned.Load() {
			mu.Lock()
			problems = append(problems, "report called after Send returned")
			mu.Unlock()
		}
		mu.Lock()
		defer mu.Unlock()
		res.calls = append(res.calls, rs)
		for _, r := range rs {
			if _, dup := res.byRcpt[r.Rcpt]; dup {
				problems = append(problems, "reported twice: "+r.Rcpt)
			}
			res.byRcpt[r.Rcpt] = r.Err
		}
	})
	returned.Store(true)
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for _, r := range rcpts {
		if _, ok := res.byRcpt[r]; !ok {
			t.Errorf("never reported: %s", r)
		}
	}
	if len(res.byRcpt) != len(rcpts) {
		t.Errorf("%d recipients reported, sent %d", len(res.byRcpt), len(rcpts))
	}
	return res
}

func addresses(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// wantErr checks one recipient's result; stage "" means delivered.
func wantErr(t *testing.T, res sendResult, rcpt, stage string, temporary bool, code int) {
	t.Helper()
	e := res.byRcpt[rcpt]
	switch {
	case stage == "" && e != nil:
		t.Errorf("%s: %v, want delivered", rcpt, e)
	case stage == "":
	case e == nil:
		t.Errorf("%s delivered, want a %s error", rcpt, stage)
	case e.Stage != stage || e.Temporary != temporary || e.Code != code:
		t.Errorf("%s: %#v, want stage %s, temporary %v, code %d", rcpt, *e, stage, temporary, code)
	}
}

func TestSendOne(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	res := send(t, t.Context(), newClient(t, relayConfig(srv)), []string{"one@example.net"}, message)
	wantErr(t, res, "one@example.net", "", false, 0)
	m := srv.Messages()
	if len(m) != 1 || m[0].From != bounce || string(m[0].Data) != message ||
		len(m[0].Rcpts) != 1 || m[0].Rcpts[0] != "one@example.net" || m[0].Body != smtp.Body8BitMIME {
		t.Fatalf("server got %+v", m)
	}
	if len(res.calls) != 1 {
		t.Fatalf("%d report calls, want 1", len(res.calls))
	}
}

func TestSendTenThousand(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{MaxRecipients: 50})
	rcpts := addresses(10000, "r%05d@example.net")
	res := send(t, t.Context(), newClient(t, relayConfig(srv)), rcpts, message)

	for _, r := range rcpts {
		if res.byRcpt[r] != nil {
			t.Fatalf("%s: %v", r, res.byRcpt[r])
		}
	}
	seen := map[string]int{}
	for _, r := range srv.Recipients() {
		seen[r]++
	}
	for _, r := range rcpts {
		if seen[r] != 1 {
			t.Fatalf("%s delivered %d times", r, seen[r])
		}
	}
	msgs := srv.Messages()
	conns := map[int]bool{}
	for _, m := range msgs {
		if len(m.Rcpts) > 50 || m.From != bounce || string(m.Data) != message {
			t.Fatalf("transaction with %d recipients from %s, data %q", len(m.Rcpts), m.From, m.Data)
		}
		conns[m.Conn] = true
	}
	if len(msgs) != 200 || len(res.calls) != len(msgs) {
		t.Fatalf("%d transactions and %d report calls, want 200 each", len(msgs), len(res.calls))
	}
	for _, call := range res.calls {
		if len(call) != 50 {
			t.Fatalf("a report call has %d results, want 50 (one transaction)", len(call))
		}
	}
	if len(conns) > 4 || srv.Connections() > 4 {
		t.Fatalf("%d connections used, %d opened; want at most 4", len(conns), srv.Connections())
	}
}

func TestRecipientReplies(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		switch rcpt {
		case "gone@example.net":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case "full@example.net":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		}
		return nil
	})
	rcpts := []string{"a@example.net", "gone@example.net", "b@example.net", "full@example.net", "c@example.net"}
	res := send(t, t.Context(), newClient(t, relayConfig(srv)), rcpts, message)
	wantErr(t, res, "gone@example.net", StageRcpt, false, 550)
	wantErr(t, res, "full@example.net", StageRcpt, true, 452)
	for _, r := range []string{"a@example.net", "b@example.net", "c@example.net"} {
		wantErr(t, res, r, "", false, 0)
	}
	if e := res.byRcpt["gone@example.net"]; e.Enhanced != [3]int{5, 1, 1} || e.Message != "no such user" {
		t.Errorf("550 reply: %#v", *e)
	}
	if got := strings.Join(srv.Recipients(), " "); got != "a@example.net b@example.net c@example.net" {
		t.Fatalf("server got %s", got)
	}
}

func TestNoRecipientAcceptedResets(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		if strings.HasPrefix(rcpt, "bad") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
		}
		return nil
	})
	cfg := relayConfig(srv)
	cfg.MaxRecipients, cfg.Connections = 2, 1
	rcpts := []string{"bad1@example.net", "bad2@example.net", "good1@example.net", "good2@example.net"}
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	wantErr(t, res, "bad1@example.net", StageRcpt, false, 550)
	wantErr(t, res, "good2@example.net", "", false, 0)
	// One message: the all-refused transaction sent no DATA, and the
	// connection went on after RSET.
	if m := srv.Messages(); len(m) != 1 || srv.Connections() != 1 {
		t.Fatalf("%d messages over %d connections, want 1 over 1", len(m), srv.Connections())
	}
}

func TestDataReplies(t *testing.T) {
	for _, tc := range []struct {
		code      int
		temporary bool
	}{{451, true}, {554, false}} {
		srv := testsmtp.Start(t, testsmtp.Options{})
		srv.SetDataHook(func(testsmtp.Message) error {
			return &smtp.SMTPError{Code: tc.code, EnhancedCode: smtp.EnhancedCode{tc.code / 100, 6, 0}, Message: "content"}
		})
		srv.SetRcptHook(func(rcpt string) *smtp.SMTPError {
			if rcpt == "gone@example.net" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
			}
			return nil
		})
		rcpts := []string{"a@example.net", "gone@example.net", "b@example.net"}
		res := send(t, t.Context(), newClient(t, relayConfig(srv)), rcpts, message)
		wantErr(t, res, "a@example.net", StageData, tc.temporary, tc.code)
		wantErr(t, res, "b@example.net", StageData, tc.temporary, tc.code)
		wantErr(t, res, "gone@example.net", StageRcpt, false, 550) // its own result stays
	}
}

func TestSenderRefusedIsTemporary(t *testing.T) {
	for _, code := range []int{451, 553} {
		srv := testsmtp.Start(t, testsmtp.Options{})
		srv.SetMailHook(func(string) *smtp.SMTPError {
			return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 7, 1}, Message: "not your address"}
		})
		rcpts := addresses(120, "r%d@example.net")
		res := send(t, t.Context(), newClient(t, relayConfig(srv)), rcpts, message)
		for _, r := range rcpts {
			wantErr(t, res, r, StageMail, true, code)
		}
		// A refused sender is no connection failure: the connections
		// stay and take the other transactions.
		if n := srv.Connections(); n > 3 {
			t.Errorf("%d connections for 3 transactions", n)
		}
	}
}

func TestUTF8(t *testing.T) {
	rcpts := []string{"ascii@example.net", "jürgen@example.net", "用户@例子.测试"}
	t.Run("supported", func(t *testing.T) {
		srv := testsmtp.Start(t, testsmtp.Options{SMTPUTF8: true})
		res := send(t, t.Context(), newClient(t, relayConfig(srv)), rcpts, message)
		for _, r := range rcpts {
			wantErr(t, res, r, "", false, 0)
		}
		if m := srv.Messages(); len(m) != 1 || !m[0].UTF8 || len(m[0].Rcpts) != 3 {
			t.Fatalf("server got %+v", m)
		}
	})
	t.Run("unsupported", func(t *testing.T) {
		srv := testsmtp.Start(t, testsmtp.Options{})
		res := send(t, t.Context(), newClient(t, relayConfig(srv)), rcpts, message)
		wantErr(t, res, "ascii@example.net", "", false, 0)
		for _, r := range rcpts[1:] {
			wantErr(t, res, r, StageRcpt, false, 553)
			// Refused by us, not by the server (whose text says testsmtp).
			if e := res.byRcpt[r]; e == nil || e.Enhanced != [3]int{5, 6, 7} || strings.Contains(e.Message, "testsmtp") {
				t.Errorf("%s: %v", r, e)
			}
		}
		if m := srv.Messages(); len(m) != 1 || m[0].UTF8 || len(m[0].Rcpts) != 1 {
			t.Fatalf("server got %+v", m)
		}
	})
	t.Run("sender", func(t *testing.T) {
		const from = "rückläufer@example.org"
		srv := testsmtp.Start(t, testsmtp.Options{SMTPUTF8: true})
		res := sendFrom(t, t.Context(), newClient(t, relayConfig(srv)), from, rcpts[:1], message)
		wantErr(t, res, rcpts[0], "", false, 0)
		if m := srv.Messages(); len(m) != 1 || !m[0].UTF8 || m[0].From != from {
			t.Fatalf("server got %+v", m)
		}
		srv = testsmtp.Start(t, testsmtp.Options{})
		res = sendFrom(t, t.Context(), newClient(t, relayConfig(srv)), from, rcpts[:1], message)
		wantErr(t, res, rcpts[0], StageMail, true, 0) // our bounce address is the problem
	})
	t.Run("no 8BITMIME", func(t *testing.T) {
		srv := testsmtp.Start(t, testsmtp.Options{No8BitMIME: true})
		send(t, t.Context(), newClient(t, relayConfig(srv)), rcpts[:1], message)
		if m := srv.Messages(); len(m) != 1 || m[0].Body != "" {
			t.Fatalf("server got %+v, want no BODY=", m)
		}
	})
}

func TestLogsNoSecretsNoContent(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{TLS: testsmtp.StartTLS, Username: "relayuser", Password: "s3cret-pw"})
	cfg := relayConfig(srv)
	cfg.TLS, cfg.CAFile, cfg.Username, cfg.Password = "starttls", srv.CAFile(), "relayuser", "s3cret-pw"
	var buf bytes.Buffer
	c, err := New(cfg, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	send(t, t.Context(), c, []string{"a@example.net"}, message)
	cfg.Password = "wrong-pw"
	c, _ = New(cfg, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	send(t, t.Context(), c, []string{"b@example.net"}, message)
	logs := buf.String()
	if !strings.Contains(logs, "relay transaction") || !strings.Contains(logs, "relay connection failed") {
		t.Fatalf("expected log lines missing:\n%s", logs)
	}
	for _, secret := range []string{"s3cret-pw", "wrong-pw", "body line", "Subject"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q:\n%s", secret, logs)
		}
	}
}
