package lmtp

import (
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/token"
)

// TestGuessingSenderIsDeferred: after guess_limit unknown tokens from one
// envelope sender, its next guesses get 450 4.7.1 and stay in Postfix's
// queue — but a valid token from the same sender (whose address anybody
// can forge) is delivered: the guard holds back guesses only.
func TestGuessingSenderIsDeferred(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := guard.New(guard.Limits{Limit: 2, Window: time.Minute, Block: 10 * time.Minute}, 0)
	e.swap(func(o *Options) { o.Guard = g })
	const mallory = "mallory@example.net"
	guess := func() string {
		replies, _ := e.lmtpSend(mallory, []string{"board@example.org"}, message(token.Generate(), ""))
		return replies["board@example.org"]
	}
	for range 2 {
		if r := guess(); !strings.HasPrefix(r, "550 5.7.1 Unknown posting token") {
			t.Fatalf("guess: %q, want 550 5.7.1 Unknown posting token", r)
		}
	}
	if r := guess(); !strings.HasPrefix(r, "450 4.7.1 Too many invalid posting tokens for <board@example.org>") {
		t.Fatalf("blocked sender's guess: %q, want 450 4.7.1", r)
	}
	valid := e.issue("board@example.org", func(r *token.Record) { r.UsesAllowed = 5 })
	if replies, _ := e.lmtpSend(mallory, []string{"board@example.org"}, message(valid, "")); replies["board@example.org"] != "250" {
		t.Fatalf("a valid token from the blocked sender: %q, want 250", replies["board@example.org"])
	}
	if n := e.spent(valid); n != 1 {
		t.Errorf("token spent %d times, want 1", n)
	}
	e.advance(11 * time.Minute)
	if r := guess(); !strings.HasPrefix(r, "550 5.7.1 Unknown posting token") {
		t.Errorf("after the block: %q, want 550 again", r)
	}
}
