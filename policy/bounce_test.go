package policy

import (
	"testing"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/token"
)

func TestBounceAddresses(t *testing.T) {
	board := &List{Addr: address.MustParse("board@example.org"), Bounce: address.MustParse("board-bounces@example.org")}
	r := NewRules("+", token.Finder{}, []*List{board})
	if got := r.BounceEnvelope(board, "k3x9q2mzpa"); got != "board-bounces+k3x9q2mzpa@example.org" {
		t.Errorf("envelope %q", got)
	}
	if got := r.BounceEnvelope(board, ""); got != "board-bounces@example.org" {
		t.Errorf("untagged envelope %q", got)
	}
	for rcpt, want := range map[string]string{
		"board-bounces+K3X9Q2MZPA@Example.org": "k3x9q2mzpa",
		"<board-bounces+abc@example.org>":      "abc",
		"board-bounces@example.org":            "",
	} {
		l, tag := r.ResolveBounce(rcpt)
		if l != board || tag != want {
			t.Errorf("ResolveBounce(%q) = %v, %q; want board, %q", rcpt, l, tag, want)
		}
	}
	for _, rcpt := range []string{"board@example.org", "board+x@example.org", "other-bounces+x@example.org", "not an address"} {
		if r.IsBounceAddress(rcpt) {
			t.Errorf("%q taken for a bounce address", rcpt)
		}
	}
	none := NewRules("", token.Finder{}, []*List{board})
	if got := none.BounceEnvelope(board, "k3x9q2mzpa"); got != "board-bounces@example.org" {
		t.Errorf("without a delimiter: %q", got)
	}
}
