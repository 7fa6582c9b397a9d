package lmtp

import (
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/token"
)

// TestGuessingSenderIsDeferred: after guess_limit unknown tokens from one
// envelope sender, its next message — even with a valid token, which is
// then neither looked up nor spent — gets 450 4.7.1 and stays in Postfix's
// queue; another sender is unaffected; after the block the sender's valid
// message is delivered.
func TestGuessingSenderIsDeferred(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := guard.New(guard.Limits{Limit: 2, Window: time.Minute, Block: 10 * time.Minute}, 0)
	e.swap(func(o *Options) { o.Guard = g })
	const mallory = "mallory@example.net"
	for range 2 {
		replies, _ := e.lmtpSend(mallory, []string{"board@example.org"}, message("guessedtoken"+strings.Repeat("x", 10), ""))
		if r := replies["board@example.org"]; !strings.HasPrefix(r, "550 5.7.1 Unknown posting token") {
			t.Fatalf("guess: %q, want 550 5.7.1 Unknown posting token", r)
		}
	}
	valid := e.issue("board@example.org", func(r *token.Record) { r.UsesAllowed = 5 })
	replies, _ := e.lmtpSend(mallory, []string{"board@example.org"}, message(valid, ""))
	if r := replies["board@example.org"]; !strings.HasPrefix(r, "450 4.7.1 Too many invalid posting tokens for <board@example.org>") {
		t.Fatalf("blocked sender: %q, want 450 4.7.1", r)
	}
	if n := e.spent(valid); n != 0 {
		t.Errorf("a blocked sender's token was spent %d times", n)
	}
	if replies, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, message(valid, "")); replies["board@example.org"] != "250" {
		t.Errorf("another sender: %q, want 250", replies["board@example.org"])
	}
	e.advance(11 * time.Minute)
	if replies, _ := e.lmtpSend(mallory, []string{"board@example.org"}, message(valid, "")); replies["board@example.org"] != "250" {
		t.Errorf("after the block: %q, want 250", replies["board@example.org"])
	}
	if n := e.spent(valid); n != 2 {
		t.Errorf("token spent %d times, want 2", n)
	}
}
