package address

import (
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics and that what it accepts is
// stable: the normalised form parses back to the same address, the domain
// is lower-case ASCII, and a subaddress split loses nothing.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"user@example.org", "<Board+tok@Example.ORG>", `"john doe"@example.org`,
		"jürgen@bücher.example", "user@example.org.", "a@b@c", "@", "",
		`"\"@x.example`, "user@xn--bcher-kva.example", "用户@例え.テスト",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		if a.IsZero() || a.Local == "" || a.Domain == "" {
			t.Fatalf("Parse(%q) = %+v without an error", s, a)
		}
		for i := 0; i < len(a.Domain); i++ {
			if c := a.Domain[i]; c >= utf8.RuneSelf || c >= 'A' && c <= 'Z' {
				t.Fatalf("Parse(%q): domain %q is not lower-case ASCII", s, a.Domain)
			}
		}
		if len(a.String()) > MaxLength {
			t.Fatalf("Parse(%q) = %q, longer than %d octets", s, a.String(), MaxLength)
		}
		b, err := Parse(a.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse again: %v", s, a.String(), err)
		}
		if b != a || b.Key() != a.Key() {
			t.Fatalf("Parse(%q) = %+v, but its String parses to %+v", s, a, b)
		}
		if base, ext, ok := a.SplitSubaddress("+"); ok {
			if base.Local+"+"+ext != a.Local || base.Domain != a.Domain {
				t.Fatalf("SplitSubaddress(%+v) = %+v, %q", a, base, ext)
			}
		}
	})
}
