package policy

import (
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/token"
)

func TestListFor(t *testing.T) {
	t.Parallel()
	board := &List{Addr: address.MustParse("board@example.org")}
	rules := func(delim string) *Rules { return NewRules(delim, token.Finder{}, []*List{board}) }
	r := rules("+")
	tests := []struct {
		rcpt string
		list bool
		ext  string
	}{
		{"board@example.org", true, ""},
		{"BOARD@Example.ORG", true, ""},
		{"board+abc123@example.org", true, "abc123"},
		{"Board+ABC@example.org", true, "ABC"},
		{"board+@example.org", true, ""},
		{"board-abc@example.org", false, ""},
		{"boards@example.org", false, ""},
		{"other+abc@example.org", false, ""},
		{"board+abc@example.net", false, ""},
	}
	for _, tt := range tests {
		l, ext := r.ListFor(address.MustParse(tt.rcpt))
		if (l != nil) != tt.list || ext != tt.ext {
			t.Errorf("ListFor(%q) = %v, %q; want list %v, %q", tt.rcpt, l, ext, tt.list, tt.ext)
		}
		if l != nil && l != board {
			t.Errorf("ListFor(%q) = %s", tt.rcpt, l.Addr)
		}
	}
	// Without a delimiter, no subaddress is split off.
	r = rules("")
	if l, _ := r.ListFor(address.MustParse("board+abc@example.org")); l != nil {
		t.Errorf("ListFor with no delimiter found %s", l.Addr)
	}
	if l, _ := r.ListFor(address.MustParse("board@example.org")); l == nil {
		t.Error("ListFor(board@) with no delimiter found nothing")
	}
	// Several delimiter characters, as Postfix allows.
	r = rules("+-")
	if l, ext := r.ListFor(address.MustParse("board-abc@example.org")); l == nil || ext != "abc" {
		t.Errorf("ListFor(board-abc@) with delimiters +- = %v, %q", l, ext)
	}
}

func TestRoutesToUs(t *testing.T) {
	t.Parallel()
	r := NewRules("+", token.Finder{}, nil)
	r.Transport = "lmtp:[127.0.0.1]:8024"
	for _, tt := range []struct {
		mailer, host string
		want         bool
	}{
		{"lmtp", "[127.0.0.1]:8024", true},
		{"lmtp", "127.0.0.1:8024", true},
		{"lmtp", "inet:127.0.0.1:8024", true},
		{"LMTP", "[127.0.0.1]:8024", true},
		{"lmtp", "[127.0.0.1]:8025", false},
		{"restrictedmail", "inet:127.0.0.1:8024", true}, // a named lmtp service of master.cf
		{"error", "[127.0.0.1]:8024", false},
		{"lmtp", "", false},
		{"", "[127.0.0.1]:8024", false},
	} {
		if got := r.RoutesToUs(tt.mailer, tt.host); got != tt.want {
			t.Errorf("RoutesToUs(%q, %q) = %v", tt.mailer, tt.host, got)
		}
	}
	r.Transport = "lmtp:unix:/run/rm/lmtp.sock"
	if !r.RoutesToUs("lmtp", "unix:/run/rm/lmtp.sock") || r.RoutesToUs("lmtp", "unix:/run/other.sock") {
		t.Error("unix next hops")
	}
	r.Transport = ""
	if r.RoutesToUs("lmtp", "") {
		t.Error("no transport routes nothing to us")
	}
}

// TestResolveSpellings: the spellings Postfix delivers to a list resolve to
// it, with the token of the extension when there is one.
func TestResolveSpellings(t *testing.T) {
	t.Parallel()
	board := &List{Addr: address.MustParse("board@example.org"), Aliases: []address.Address{address.MustParse("styret@example.org")}}
	r := NewRules("+", token.Finder{}, []*List{board})
	tok := token.Generate()
	for _, tt := range []struct{ rcpt, tok string }{
		{`"board"@example.org`, ""},
		{"<@relay.test:board@example.org>", ""},
		{"board+x.@example.org", ""},
		{`"board+x."@example.org`, ""},
		{"BOARD+" + tok + "@EXAMPLE.ORG", tok},
		{`"board+` + tok + `"@example.org`, tok},
		{"styret@example.org", ""},
		{"ſtyret+" + tok + "@example.org", tok},
	} {
		rc, err := r.Resolve(tt.rcpt)
		if err != nil || rc.List != board || !strings.EqualFold(rc.Token, tt.tok) {
			t.Errorf("Resolve(%q) = %+v, %v; want board with token %q", tt.rcpt, rc, err, tt.tok)
		}
	}
}
