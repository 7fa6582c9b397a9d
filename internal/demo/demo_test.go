package demo

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestRun plays the README's "run" command and checks the story it tells:
// the milter refuses the tokenless message and accepts the tokened one,
// the copy reaches the three members signed and without the token, and the
// spent token is refused the second time.
func TestRun(t *testing.T) {
	t.Parallel()
	var out, log bytes.Buffer
	if err := Run(context.Background(), t.TempDir(), &out, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatalf("demo: %v\n%s\nlog:\n%s", err, out.String(), log.String())
	}
	for _, want := range []string{
		"message without a token: rejected: 550 5.7.1 No posting token found: <board@example.org>",
		"message with the token attached: accepted",
		"LMTP reply: 250 2.0.0",
		"alice@example.net, bob@example.com, carol@example.com",
		"From: \"Alice Author via Example Board\" <board@example.org>",
		"dkim=pass header.d=example.org",
		"token still in the copy: false",
		"550 5.7.1 <board@example.org> Posting token already used",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo does not say %q:\n%s", want, out.String())
		}
	}
}
