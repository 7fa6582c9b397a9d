package policy

import (
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
