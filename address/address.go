// Package address parses and compares mail addresses the way restrictedmail
// needs them: RFC 5322 addr-specs (RFC 6531 UTF-8 local parts and
// internationalised domains included), compared case-insensitively, with
// Postfix-style subaddresses (board+token@example.org).
package address

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Address is a parsed addr-spec. Local keeps the spelling it was given;
// Domain is the ASCII (A-label) form, lower-cased, so that two spellings of
// one internationalised domain compare equal.
type Address struct {
	Local  string
	Domain string
}

// MaxLength is the longest path RFC 5321 §4.5.3.1.3 allows (256 octets
// including the angle brackets).
const MaxLength = 254

var (
	errEmpty  = errors.New("address is empty")
	errNoAt   = errors.New("address has no @")
	errLocal  = errors.New("local part is not a valid dot-atom or quoted string")
	errDomain = errors.New("domain is not a valid host name")
	errLong   = fmt.Errorf("address is longer than %d octets", MaxLength)
)

// Parse parses a bare addr-spec ("user@example.org"); angle brackets around
// it are tolerated because SMTP and milter peers often keep them.
func Parse(s string) (Address, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return Address{}, errEmpty
	}
	if len(s) > MaxLength {
		return Address{}, errLong
	}
	if !utf8.ValidString(s) {
		return Address{}, errors.New("address is not valid UTF-8")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Address{}, errNoAt
	}
	local, domain := s[:at], s[at+1:]
	if !validLocal(local) {
		return Address{}, errLocal
	}
	d, err := normalizeDomain(domain)
	if err != nil {
		return Address{}, err
	}
	// The A-label form can be far longer than the U-labels it came from
	// ("ü" is "xn--tda"), and it is what String returns and what travels
	// to a server without SMTPUTF8: the limit applies to it too.
	if len(local)+1+len(d) > MaxLength {
		return Address{}, errLong
	}
	return Address{Local: local, Domain: d}, nil
}

// MustParse is Parse for addresses written in code and tests.
func MustParse(s string) Address {
	a, err := Parse(s)
	if err != nil {
		panic(fmt.Sprintf("address.MustParse(%q): %v", s, err))
	}
	return a
}

// String returns local@domain with the domain in its ASCII form.
func (a Address) String() string {
	if a.Local == "" && a.Domain == "" {
		return ""
	}
	return a.Local + "@" + a.Domain
}

// Key is the form used to compare addresses: local part and domain
// lower-cased. RFC 5321 lets a host treat local parts case-sensitively,
// but no mail system a sender meets does, and SPEC.md asks for
// case-insensitive sender bindings.
func (a Address) Key() string {
	return strings.ToLower(a.Local) + "@" + a.Domain
}

// Equal reports whether a and b name the same mailbox, ignoring case.
func (a Address) Equal(b Address) bool { return a.Key() == b.Key() }

// IsZero reports whether a is the null address (the empty reverse-path).
func (a Address) IsZero() bool { return a.Local == "" && a.Domain == "" }

// SplitSubaddress splits "board+extension" at the first delimiter and
// returns the base local part and the extension. With no delimiter in the
// local part (or an empty delimiter) the extension is empty and ok false.
func (a Address) SplitSubaddress(delimiter string) (base Address, extension string, ok bool) {
	if delimiter == "" {
		return a, "", false
	}
	// Postfix treats recipient_delimiter as a set of single characters.
	i := strings.IndexAny(a.Local, delimiter)
	if i <= 0 {
		return a, "", false
	}
	return Address{Local: a.Local[:i], Domain: a.Domain}, a.Local[i+1:], true
}

// HasUTF8 reports whether the address needs SMTPUTF8 (RFC 6531) to travel.
func (a Address) HasUTF8() bool {
	for i := 0; i < len(a.Local); i++ {
		if a.Local[i] >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// Domain parses a bare domain name and returns its lower-cased ASCII form.
func Domain(s string) (string, error) { return normalizeDomain(s) }

func normalizeDomain(domain string) (string, error) {
	if domain == "" {
		return "", errDomain
	}
	domain = strings.TrimSuffix(domain, ".")
	// Nearly every domain is already lower-case ASCII letters, digits,
	// hyphens and dots: check it in place, without the IDNA machinery and
	// without allocating (a 100,000-member list parses every address).
	// An A-label ("xn--…") must still be checked by IDNA.
	if validLDH(domain) && !strings.Contains(domain, "xn--") {
		return domain, nil
	}
	// A domain literal ([192.0.2.1]) is legal but never a list or a bounce
	// address we want; reject it with the ordinary error.
	ascii, err := idnaProfile.ToASCII(domain)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errDomain, err)
	}
	ascii = strings.ToLower(ascii)
	if !validLDH(ascii) {
		return "", errDomain
	}
	return ascii, nil
}

// validLDH reports whether d is a lower-case host name: dot-separated
// labels of 1 to 63 letters, digits and hyphens, not starting or ending
// with a hyphen.
func validLDH(d string) bool {
	start := 0
	for i := 0; i <= len(d); i++ {
		if i < len(d) && d[i] != '.' {
			c := d[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
			continue
		}
		l := d[start:i]
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		start = i + 1
	}
	return true
}

// idnaProfile is immutable after construction, so sharing it is safe.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false))

// atext of RFC 5322 §3.2.3, widened by RFC 6531 to every non-ASCII UTF-8
// character.
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r >= utf8.RuneSelf:
		return true
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

func validLocal(l string) bool {
	if l == "" || len(l) > 64 {
		return false
	}
	if strings.HasPrefix(l, `"`) {
		return validQuoted(l)
	}
	// dot-atom: atoms of atext separated by single dots.
	prevDot := true
	for _, r := range l {
		if r == '.' {
			if prevDot {
				return false
			}
			prevDot = true
			continue
		}
		if !isAtext(r) {
			return false
		}
		prevDot = false
	}
	return !prevDot
}

func validQuoted(l string) bool {
	if len(l) < 2 || !strings.HasSuffix(l, `"`) {
		return false
	}
	inner := l[1 : len(l)-1]
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		switch {
		case c == '\\':
			i++
			if i >= len(inner) {
				return false
			}
		case c == '"' || c == '\r' || c == '\n' || c == 0:
			return false
		}
	}
	return true
}
