package config

import (
	"testing"
	"time"
)

// TestGuessKeys: [tokens] guess_limit, guess_window and guess_block have
// their documented defaults, take values, and report impossible ones with
// key and line.
func TestGuessKeys(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, minimal)
	if g := cfg.Tokens; g.GuessLimit != 10 || g.GuessWindow.D() != 10*time.Minute || g.GuessBlock.D() != 15*time.Minute {
		t.Errorf("defaults: guess_limit %d, guess_window %v, guess_block %v; want 10, 10m, 15m", g.GuessLimit, g.GuessWindow, g.GuessBlock)
	}
	cfg = mustLoad(t, minimal+"\n[tokens]\nguess_limit = 3\nguess_window = \"1m\"\nguess_block = \"1h\"\n")
	if g := cfg.Tokens; g.GuessLimit != 3 || g.GuessWindow.D() != time.Minute || g.GuessBlock.D() != time.Hour {
		t.Errorf("set: %+v", g)
	}
	// 0 turns the limit off; the durations do not matter then.
	mustLoad(t, minimal+"\n[tokens]\nguess_limit = 0\nguess_window = \"0s\"\nguess_block = \"0s\"\n")

	for _, tc := range []struct{ doc, key, text, line string }{
		{"guess_limit = -1\n", "tokens.guess_limit", "must be 0 (off) or more", "guess_limit"},
		{"guess_window = \"0s\"\n", "tokens.guess_window", "longer than 0", "guess_window"},
		{"guess_block = \"0s\"\n", "tokens.guess_block", "longer than 0", "guess_block"},
		{"guess_block = 900\n", "tokens.guess_block", "must be a string", "guess_block"},
		{"guess_window = \"ten minutes\"\n", "tokens.guess_window", "is not a duration", "guess_window"},
		{"guess_limt = 3\n", "tokens.guess_limt", `did you mean "guess_limit"`, "guess_limt"},
	} {
		doc := minimal + "\n[tokens]\n" + tc.doc
		_, ps, _ := load(t, doc)
		if p := wantError(t, ps, tc.key, tc.text); p.Line != lineOf(t, doc, tc.line) {
			t.Errorf("%s: problem on line %d, want %d", tc.key, p.Line, lineOf(t, doc, tc.line))
		}
	}
}
