package address

import (
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in         string
		local      string
		domain     string
		wantString string
	}{
		{"user@example.org", "user", "example.org", "user@example.org"},
		{"first.last@example.org", "first.last", "example.org", "first.last@example.org"},
		{"a.b.c@sub.example.org", "a.b.c", "sub.example.org", "a.b.c@sub.example.org"},
		{"x+tag@example.org", "x+tag", "example.org", "x+tag@example.org"},
		{"!#$%&'*+-/=?^_`{|}~@example.org", "!#$%&'*+-/=?^_`{|}~", "example.org", "!#$%&'*+-/=?^_`{|}~@example.org"},
		{"User@EXAMPLE.Org", "User", "example.org", "User@example.org"},
		{"  user@example.org\t", "user", "example.org", "user@example.org"},
		{"<user@example.org>", "user", "example.org", "user@example.org"},
		{" <user@example.org> ", "user", "example.org", "user@example.org"},
		{`"john doe"@example.org`, `"john doe"`, "example.org", `"john doe"@example.org`},
		{`"a@b"@example.org`, `"a@b"`, "example.org", `"a@b"@example.org`},
		{`"esc\"aped"@example.org`, `"esc\"aped"`, "example.org", `"esc\"aped"@example.org`},
		{`"a..b"@example.org`, `"a..b"`, "example.org", `"a..b"@example.org`},
		{"jürgen@example.org", "jürgen", "example.org", "jürgen@example.org"},
		{"用户@example.org", "用户", "example.org", "用户@example.org"},
		{"user@bücher.example", "user", "xn--bcher-kva.example", "user@xn--bcher-kva.example"},
		{"user@BÜCHER.example", "user", "xn--bcher-kva.example", "user@xn--bcher-kva.example"},
		{"user@xn--bcher-kva.example", "user", "xn--bcher-kva.example", "user@xn--bcher-kva.example"},
		{"user@例え.テスト", "user", "xn--r8jz45g.xn--zckzah", "user@xn--r8jz45g.xn--zckzah"},
		{"user@localhost", "user", "localhost", "user@localhost"},
		{"user@a-b.example", "user", "a-b.example", "user@a-b.example"},
		{"user@123.example", "user", "123.example", "user@123.example"},
		// A trailing dot names the same (fully qualified) domain; it is
		// dropped so that both spellings compare equal.
		{"user@example.org.", "user", "example.org", "user@example.org"},
		{strings.Repeat("l", 64) + "@example.org", strings.Repeat("l", 64), "example.org", strings.Repeat("l", 64) + "@example.org"},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if a.Local != tt.local || a.Domain != tt.domain {
			t.Errorf("Parse(%q) = {%q, %q}, want {%q, %q}", tt.in, a.Local, a.Domain, tt.local, tt.domain)
		}
		if got := a.String(); got != tt.wantString {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.wantString)
		}
		// What String gives must parse back to the same address.
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", a.String(), b, err, a)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	longDomain := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + ".example"
	tests := []struct {
		name string
		in   string
		want string // part of the error text
	}{
		{"empty", "", "empty"},
		{"blank", "   ", "empty"},
		{"empty brackets", "<>", "empty"},
		{"missing at", "user.example.org", "no @"},
		{"empty local", "@example.org", "local part"},
		{"empty domain", "user@", "domain"},
		{"leading dot", ".user@example.org", "local part"},
		{"trailing dot in local", "user.@example.org", "local part"},
		{"double dot", "us..er@example.org", "local part"},
		{"space in local", "us er@example.org", "local part"},
		{"two ats", "a@b@example.org", "local part"},
		{"unterminated quote", `"abc@example.org`, "local part"},
		{"escaped closing quote", `"abc\"@example.org`, "local part"},
		{"bare quote inside", `"a"b"@example.org`, "local part"},
		{"parenthesis", "a(b)@example.org", "local part"},
		{"local too long", strings.Repeat("l", 65) + "@example.org", "local part"},
		{"empty label", "user@example..org", "domain"},
		{"leading dot in domain", "user@.example.org", "domain"},
		{"two trailing dots", "user@example.org..", "domain"},
		{"label starts with hyphen", "user@-example.org", "domain"},
		{"label ends with hyphen", "user@example-.org", "domain"},
		{"underscore in domain", "user@ex_ample.org", "domain"},
		{"label too long", "user@" + strings.Repeat("a", 64) + ".org", "domain"},
		{"domain literal", "user@[192.0.2.1]", "domain"},
		{"space in domain", "user@exa mple.org", "domain"},
		{"too long", strings.Repeat("l", 60) + "@" + longDomain, "longer than 254"},
		// 249 octets as written, 649 in the A-label form that String gives.
		{"too long once encoded", "a@" + strings.Repeat("ü.", 80) + "example", "longer than 254"},
		{"invalid utf8", "us\xffer@example.org", "UTF-8"},
		{"display name", "Alice <alice@example.org>", "local part"},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in)
		if err == nil {
			t.Errorf("%s: Parse(%q) = %+v, want an error", tt.name, tt.in, a)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse(%q) error %q does not mention %q", tt.name, tt.in, err, tt.want)
		}
	}
}

func TestMustParsePanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("MustParse of an invalid address did not panic")
		}
	}()
	MustParse("not an address")
}

func TestKeyAndEqual(t *testing.T) {
	t.Parallel()
	a := MustParse("Board@Example.ORG")
	b := MustParse("board@example.org")
	c := MustParse("<BOARD@EXAMPLE.ORG.>")
	if a.Key() != "board@example.org" {
		t.Errorf("Key() = %q, want board@example.org", a.Key())
	}
	if !a.Equal(b) || !b.Equal(c) || !c.Equal(a) {
		t.Errorf("case variants of one address do not compare equal: %v %v %v", a, b, c)
	}
	// The spelling given is kept for display.
	if a.Local != "Board" {
		t.Errorf("Local = %q, want the original spelling", a.Local)
	}
	if a.Equal(MustParse("board2@example.org")) || a.Equal(MustParse("board@example.net")) {
		t.Error("different addresses compare equal")
	}
	u1, u2 := MustParse("JÜRGEN@bücher.example"), MustParse("jürgen@BÜCHER.EXAMPLE")
	if !u1.Equal(u2) {
		t.Errorf("UTF-8 case variants differ: %q vs %q", u1.Key(), u2.Key())
	}
	if u1.Key() != "jürgen@xn--bcher-kva.example" {
		t.Errorf("Key() = %q", u1.Key())
	}
}

func TestZero(t *testing.T) {
	t.Parallel()
	var z Address
	if !z.IsZero() || z.String() != "" {
		t.Errorf("zero address: IsZero %v, String %q", z.IsZero(), z.String())
	}
	if MustParse("a@b.example").IsZero() {
		t.Error("a parsed address is zero")
	}
}

func TestSplitSubaddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, delim string
		base, ext string
		ok        bool
	}{
		{"board+abc123@example.org", "+", "board@example.org", "abc123", true},
		{"board+a+b@example.org", "+", "board@example.org", "a+b", true},
		{"board+@example.org", "+", "board@example.org", "", true},
		{"board@example.org", "+", "board@example.org", "", false},
		{"+abc@example.org", "+", "+abc@example.org", "", false},
		{"board+abc@example.org", "", "board+abc@example.org", "", false},
		{"board-abc@example.org", "+", "board-abc@example.org", "", false},
		// Postfix's recipient_delimiter is a set of characters: the first
		// of any of them splits.
		{"board-abc+def@example.org", "+-", "board@example.org", "abc+def", true},
		{"board+abc-def@example.org", "-+", "board@example.org", "abc-def", true},
		{"Board+ABC@Example.org", "+", "Board@example.org", "ABC", true},
	}
	for _, tt := range tests {
		base, ext, ok := MustParse(tt.in).SplitSubaddress(tt.delim)
		if base.String() != tt.base || ext != tt.ext || ok != tt.ok {
			t.Errorf("SplitSubaddress(%q, %q) = %q, %q, %v; want %q, %q, %v",
				tt.in, tt.delim, base, ext, ok, tt.base, tt.ext, tt.ok)
		}
	}
}

func TestHasUTF8(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"user@example.org", false},
		{"jürgen@example.org", true},
		{"用户@example.org", true},
		// The domain is kept in its ASCII form, so an IDN alone needs no
		// SMTPUTF8.
		{"user@bücher.example", false},
		{`"quoted ü"@example.org`, true},
	}
	for _, tt := range tests {
		if got := MustParse(tt.in).HasUTF8(); got != tt.want {
			t.Errorf("HasUTF8(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDomain(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Example.ORG":    "example.org",
		"bücher.example": "xn--bcher-kva.example",
		"example.org.":   "example.org",
	} {
		got, err := Domain(in)
		if err != nil || got != want {
			t.Errorf("Domain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".", "a..b", "a b", "-a.example", "[127.0.0.1]", "a_b.example"} {
		if got, err := Domain(in); err == nil {
			t.Errorf("Domain(%q) = %q, want an error", in, got)
		}
	}
}

// TestParseInvalidALabel: an "xn--" label is checked as punycode, also on
// the fast path for lower-case ASCII domains.
func TestParseInvalidALabel(t *testing.T) {
	t.Parallel()
	if _, err := Parse("a@xn--zz.example"); err == nil {
		t.Error("an invalid A-label was accepted")
	}
	if a, err := Parse("a@xn--bcher-kva.example"); err != nil || a.Domain != "xn--bcher-kva.example" {
		t.Errorf("valid A-label: %v, %v", a, err)
	}
}

func BenchmarkParseASCII(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse("member12345@example.com"); err != nil {
			b.Fatal(err)
		}
	}
}
