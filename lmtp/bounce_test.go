package lmtp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/bounce"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/policy"
)

// stubBounces records what the endpoint hands it.
type stubBounces struct {
	mu    sync.Mutex
	calls []string // list + " " + tag + " " + first line of the body
	fail  bool
}

func (s *stubBounces) Handle(_ context.Context, _ *delivery.Settings, l *policy.List, tag string, m bounce.Message) (bounce.Result, error) {
	b, _ := io.ReadAll(io.NewSectionReader(m.Body, 0, m.Size))
	first, _, _ := strings.Cut(string(b), "\r\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, l.Addr.String()+" "+tag+" "+first)
	if s.fail {
		return "", errors.New("store down")
	}
	return bounce.Recorded, nil
}

// TestBounceRecipients: the lists' bounce addresses, with or without a
// tag, are accepted and handed to the bounce handler — once per address,
// never to the delivery engine — while other addresses stay refused; a
// failing handler answers 451 so that Postfix keeps the message. Without a
// handler the bounce addresses are refused like any non-list.
func TestBounceRecipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, errs := e.lmtpSend("", []string{"board-bounces+abcdefghij@example.org"}, []byte("Subject: x\r\n\r\nx\r\n")); errs["board-bounces+abcdefghij@example.org"] == nil {
		t.Fatal("a bounce address was accepted by an endpoint without a bounce handler")
	}
	stub := &stubBounces{}
	opts := e.options(slog.New(slog.DiscardHandler))
	opts.Bounces = stub
	srv := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	e.addr = ln.Addr().String()

	rcpts := []string{"board-bounces+abcdefghij@example.org", "Board-Bounces+ABCDEFGHIJ@example.org", "events-bounces@example.org", "nobody-bounces@example.org"}
	replies, errs := e.lmtpSend("", rcpts, []byte("Subject: report\r\n\r\nbody\r\n"))
	if errs["nobody-bounces@example.org"] == nil {
		t.Error("an address that is no list and no bounce address was accepted")
	}
	for _, r := range rcpts[:3] {
		if errs[r] != nil || replies[r] != "250" {
			t.Errorf("%s: rcpt %v, reply %q", r, errs[r], replies[r])
		}
	}
	want := []string{"board@example.org abcdefghij Subject: report", "events@example.org  Subject: report"}
	if strings.Join(stub.calls, "|") != strings.Join(want, "|") {
		t.Errorf("handler calls %q, want %q", stub.calls, want)
	}
	if n := len(e.relay.sends); n != 0 {
		t.Errorf("%d fan-outs for mail to bounce addresses", n)
	}
	stub.fail = true
	replies, _ = e.lmtpSend("", rcpts[:1], []byte("Subject: report\r\n\r\nbody\r\n"))
	if !strings.HasPrefix(replies[rcpts[0]], "451") {
		t.Errorf("a failing handler: %q, want 451", replies[rcpts[0]])
	}
}
