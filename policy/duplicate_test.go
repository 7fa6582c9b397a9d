package policy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/token"
)

// usedTokens knows "tok", used up.
type usedTokens struct{}

func (usedTokens) TokenByHash(_ context.Context, h token.Hash) (token.Record, error) {
	r := record()
	r.UsesSpent = r.UsesAllowed
	return r, nil
}

// journal knows the messages in spent, by list, token id and Message-ID.
type journal struct {
	spent map[string]bool
	err   error
	asked int
}

func (j *journal) MessageSpent(_ context.Context, list, tokenID, messageID string) (bool, error) {
	j.asked++
	return j.spent[list+" "+tokenID+" "+messageID], j.err
}

// TestCheckerRecognisesADuplicate: a used-up token on a message the
// journal holds a delivery of (list, token, Message-ID) passes — it is the
// message arriving again through another MX; on another message, or one
// without a Message-ID, it is refused as used. A valid token never asks
// the journal; a journal failure is a temporary failure.
func TestCheckerRecognisesADuplicate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	j := &journal{spent: map[string]bool{"board@example.org abcdefghij <m1@example.net>": true}}
	c := Checker{Tokens: usedTokens{}, Journal: j}
	for _, tt := range []struct {
		mid  string
		want Reason
	}{{"<m1@example.net>", Pass}, {"<m2@example.net>", UsedUp}, {"", UsedUp}} {
		f := facts()
		f.MessageID = tt.mid
		if f, v := c.Check(ctx, f, "sender"); v.Reason != tt.want || f.Duplicate != (tt.want == Pass) {
			t.Errorf("Message-ID %q: %v (duplicate %v), want %v", tt.mid, v.Reason, f.Duplicate, tt.want)
		}
	}
	if j.asked != 2 {
		t.Errorf("the journal was asked %d times, want 2 (never without a Message-ID)", j.asked)
	}
	valid := Checker{Tokens: &someTokens{valid: "tok"}, Journal: j}
	f := facts()
	f.MessageID = "<m1@example.net>"
	if _, v := valid.Check(ctx, f); v.Reason != Pass || j.asked != 2 {
		t.Errorf("a valid token: %v, journal asked %d times, want Pass without asking", v.Reason, j.asked)
	}
	j.err = errors.New("store down")
	if _, v := c.Check(ctx, f); v.Reason != TempFail {
		t.Errorf("the journal failing: %v, want TempFail", v.Reason)
	}
}

func TestMessageIDKey(t *testing.T) {
	t.Parallel()
	long := "<" + strings.Repeat("x", 300) + "@example.net>"
	for in, want := range map[string]string{
		"<m1@example.net>":                      "<m1@example.net>",
		"  <m1@example.net> (added by mx2)\r\n": "<m1@example.net>",
		"\r\n <m1@example.net>":                 "<m1@example.net>",
		"(comment) <m1@example.net>":            "<m1@example.net>",
		"m1@example.net":                        "m1@example.net",
		"":                                      "",
		" <> ":                                  "",
	} {
		if got := MessageIDKey(in); got != want {
			t.Errorf("MessageIDKey(%q) = %q, want %q", in, got, want)
		}
	}
	if got := MessageIDKey(long); !strings.HasPrefix(got, "sha256:") || len(got) != 7+64 || MessageIDKey(long) != got {
		t.Errorf("a long Message-ID: %q", got)
	}
}
