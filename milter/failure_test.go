package milter

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

func TestTwoMessagesOnOneSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.addToken(t, nil)
	cs := h.session(t)

	wantReject(t, send(t, cs, newMail("", []string{board})), "eom", "No posting token found")
	wantAccept(t, send(t, cs, newMail("", []string{ordinary})), "data")
	wantReject(t, send(t, cs, newMail("", []string{board}, field{"X-Restricted-Token", "bad"})), "eoh", "Unknown posting token")
	wantAccept(t, send(t, cs, newMail("", []string{ordinary})), "data")

	// A message aborted in the middle of its body (RSET) leaves nothing
	// behind: the body scan is stopped, the next message starts afresh.
	if _, err := cs.Mail(sender, ""); err != nil {
		t.Fatal(err)
	}
	wantContinue(t, must(cs.Rcpt(board, "")))
	wantContinue(t, must(cs.DataStart()))
	wantContinue(t, must(cs.HeaderField("Content-Type", " multipart/mixed; boundary=b1", nil)))
	wantContinue(t, must(cs.HeaderEnd()))
	wantContinue(t, must(cs.BodyChunk([]byte("--b1\r\nContent-Type: text/plain\r\n\r\nhalf a message"))))
	if err := cs.Abort(nil); err != nil {
		t.Fatal(err)
	}
	wantAccept(t, send(t, cs, newMail("", []string{ordinary})), "data")
	wantAccept(t, send(t, cs, newMail(tok, []string{board})), "eom")
}

func must(act *gomilter.Action, err error) *gomilter.Action {
	if err != nil {
		panic(err)
	}
	return act
}

func TestReloadAppliesToTheNextMessage(t *testing.T) {
	t.Parallel()
	var cur atomic.Pointer[policy.Rules]
	h := newHarness(t, func(o *Options) { o.Rules = cur.Load })
	cur.Store(generation.Rules(h.cfg))
	cs := h.session(t)

	wantAccept(t, send(t, cs, newMail("", []string{"new@example.org"})), "data")
	toml := testTOML + `
[[lists]]
address = "new@example.org"
bounce_address = "new-bounces@example.org"
`
	cfg, problems := config.Parse([]byte(toml), filepath.Join(t.TempDir(), "r.toml"))
	if cfg == nil {
		t.Fatal(problems)
	}
	// A reload between MAIL and RCPT does not reach the message under
	// way: it is judged with the rules of its MAIL, whole.
	if _, err := cs.Mail("alice@example.net", ""); err != nil {
		t.Fatal(err)
	}
	// MAIL is sent without waiting for a reply; the first RCPT's reply
	// says the milter has read it.
	if act, err := cs.Rcpt(ordinary, ""); err != nil || act.Type != gomilter.ActionContinue {
		t.Fatalf("RCPT: %v %v", act, err)
	}
	cur.Store(generation.Rules(cfg))
	if act, err := cs.Rcpt("new@example.org", ""); err != nil || act.Type != gomilter.ActionContinue {
		t.Fatalf("RCPT: %v %v", act, err)
	}
	if act, err := cs.DataStart(); err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("DATA of the message begun before the reload: %+v %v; want accept (ordinary under its rules)", act, err)
	}
	if err := cs.Abort(nil); err != nil {
		t.Fatal(err)
	}
	// Same connection, next message: the new list is restricted.
	wantReject(t, send(t, cs, newMail("", []string{"new@example.org"})), "eom", "No posting token found: <new@example.org>")
}

func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.addToken(t, nil)
	h.db.Close()
	cs := h.session(t)

	out := send(t, cs, newMail("", []string{ordinary, sub(board, tok)}))
	wantReply(t, out.rcpt[1], 451, "451 4.3.0 Temporary failure checking the posting token")
	h.waitLog(t, "recipient deferred", "reason=tempfail", "error=", "queue_id="+testQueue)

	out = send(t, cs, newMail("", []string{board}, field{"X-Restricted-Token", tok}))
	if out.stage != "eoh" {
		t.Fatalf("decided at %s, want eoh", out.stage)
	}
	wantReply(t, out.act, 451, "451 4.3.0 ")

	out = send(t, cs, newMail(tok, []string{board}))
	if out.stage != "eom" {
		t.Fatalf("decided at %s, want eom", out.stage)
	}
	wantReply(t, out.act, 451, "451 4.3.0 ")
	h.waitLog(t, "message deferred", "stage=eom", "list=board@example.org")

	// Ordinary mail does not touch the store.
	wantAccept(t, send(t, cs, newMail("", []string{ordinary})), "data")
}

// slowTokens answers only when the lookup's context ends.
type slowTokens struct{}

func (slowTokens) TokenByHash(ctx context.Context, _ token.Hash) (token.Record, error) {
	<-ctx.Done()
	return token.Record{}, ctx.Err()
}

func TestStoreTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *Options) {
		o.Tokens = slowTokens{}
		o.ReadTimeout = time.Second
	})
	cs := h.session(t)
	out := send(t, cs, newMail("", []string{sub(board, token.Generate())}))
	wantReply(t, out.rcpt[0], 451, "451 4.3.0 ")
	h.waitLog(t, "recipient deferred", "deadline exceeded")
}

// panicTokens stands for a store with a bug.
type panicTokens struct{}

func (panicTokens) TokenByHash(context.Context, token.Hash) (token.Record, error) {
	panic("bug in the store")
}

func TestPanicIsATemporaryFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *Options) { o.Tokens = panicTokens{} })
	cs := h.session(t)

	// At RCPT: that recipient gets the 451.
	out := send(t, cs, newMail("", []string{ordinary, sub(board, token.Generate())}))
	wantContinue(t, out.rcpt[0])
	wantReply(t, out.rcpt[1], 451, "451 4.3.0 Temporary failure")
	h.waitLog(t, "recovered from a panic", "stage=rcpt", "panic=\"bug in the store\"", "goroutine", "panicTokens.TokenByHash")

	// At end of headers and end of message: the message gets it.
	out = send(t, cs, newMail("", []string{board}, field{"X-Restricted-Token", "sometoken"}))
	if out.stage != "eoh" {
		t.Fatalf("decided at %s, want eoh", out.stage)
	}
	wantReply(t, out.act, 451, "451 4.3.0 Temporary failure")
	out = send(t, cs, newMail("sometoken", []string{board}))
	if out.stage != "eom" {
		t.Fatalf("decided at %s, want eom", out.stage)
	}
	wantReply(t, out.act, 451, "451 4.3.0 Temporary failure")

	// The same connection and a new one keep working.
	wantAccept(t, send(t, cs, newMail("", []string{ordinary})), "data")
	wantAccept(t, send(t, h.session(t), newMail("", []string{ordinary})), "data")
}

func TestPanicWithoutReplyFailsTheMessage(t *testing.T) {
	t.Parallel()
	var explode atomic.Bool
	cfg := testConfig(t, t.TempDir())
	h2 := newHarness(t, func(o *Options) {
		rules := generation.Rules(cfg)
		o.Rules = func() *policy.Rules {
			if explode.Load() {
				panic("bug in the configuration")
			}
			return rules
		}
	})
	cs := h2.session(t)
	explode.Store(true)
	// The panic hits MAIL FROM, whose reply Postfix does not wait for: the
	// next answer, at RCPT, is the temporary failure. Never an accept.
	out := send(t, cs, newMail("", []string{ordinary}))
	wantReply(t, out.rcpt[0], 451, "451 4.3.0 ")
	h2.waitLog(t, "recovered from a panic", "stage=mail")
	explode.Store(false)
	wantAccept(t, send(t, cs, newMail("", []string{ordinary})), "data")
}

func TestTruncatedBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cs := h.session(t)
	// A multipart body cut short is a message without a token part.
	m := newMail("", []string{board})
	m.body = bytes.NewReader([]byte("--b1\r\nContent-Type: text/plain\r\n\r\ntruncated"))
	wantReject(t, send(t, cs, m), "eom", "No posting token found")
}

func TestServeReturnsNilAfterShutdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cs := h.session(t)
	wantAccept(t, send(t, cs, newMail("", []string{ordinary})), "data")
	if !strings.Contains(h.addr, "127.0.0.1:") {
		t.Fatalf("listening on %s", h.addr)
	}
	// The harness's cleanup shuts the server down and checks that Serve
	// returned nil.
}
