package address

import (
	"errors"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
)

// The envelope recipient as Postfix sees it. Before Postfix looks a
// recipient up in transport_maps it has already removed the angle brackets
// and any source route (<@relay:board@example.org>), unquoted the local
// part ("board"@ and board@ are one mailbox), and it demands nothing of the
// local part's syntax (board+x.@example.org is delivered to board@). Its
// table lookups fold case — with SMTPUTF8, full Unicode case folding, not
// Go's ToLower (ſ is s, K is k, ß is ss). A check that sees another
// address than Postfix delivers to is a hole; ParseEnvelope and FoldKey
// are that view.

var (
	errRoute       = errors.New("source route without a mailbox")
	errUnqualified = errors.New("address has no domain")
	errControl     = errors.New("address has control characters")
)

// ParseEnvelope parses an envelope address leniently, as Postfix's smtpd
// and trivial-rewrite do: brackets and a source route removed, the local
// part unquoted (Local holds the unquoted form), any local part accepted
// but an empty one or one with control characters. The domain must be a
// host name (an unqualified address is an error: Postfix completes it
// with myorigin, which the milter reads back from {rcpt_addr}).
func ParseEnvelope(s string) (Address, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	if strings.HasPrefix(s, "@") {
		// RFC 5321 §4.1.2 A-d-l: "@one,@two:mailbox". Postfix ignores it.
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return Address{}, errRoute
		}
		s = s[i+1:]
	}
	switch {
	case s == "":
		return Address{}, errEmpty
	case len(s) > 4*MaxLength: // quoting may double the length; beyond that, nobody's address
		return Address{}, errLong
	case !utf8.ValidString(s):
		return Address{}, errors.New("address is not valid UTF-8")
	}
	at := lastUnquotedAt(s)
	if at < 0 {
		return Address{}, errUnqualified
	}
	local, err := unquoteLocal(s[:at])
	if err != nil {
		return Address{}, err
	}
	d, err := normalizeDomain(s[at+1:])
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: d}, nil
}

// lastUnquotedAt is the index of the last @ outside a quoted string, or -1.
func lastUnquotedAt(s string) int {
	at, quoted := -1, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case '@':
			if !quoted {
				at = i
			}
		}
	}
	return at
}

// unquoteLocal removes quotes and backslash escapes wherever they are, as
// Postfix's unquote_822_local does.
func unquoteLocal(l string) (string, error) {
	if !strings.ContainsAny(l, "\"\\") {
		if err := checkLocal(l); err != nil {
			return "", err
		}
		return l, nil
	}
	var b strings.Builder
	for i := 0; i < len(l); i++ {
		switch c := l[i]; c {
		case '"':
		case '\\':
			if i+1 < len(l) {
				i++
				b.WriteByte(l[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	return out, checkLocal(out)
}

func checkLocal(l string) error {
	if l == "" {
		return errLocal
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; c < ' ' || c == 0x7f {
			return errControl
		}
	}
	return nil
}

// FoldKey is the form Postfix's tables compare: the local part case-folded
// (full Unicode folding for a non-ASCII one, as Postfix does with
// SMTPUTF8) and the ASCII domain. Quotes do not count: "board"@ and board@
// have one key.
func (a Address) FoldKey() string {
	return FoldLocal(a.Local) + "@" + a.Domain
}

// FoldLocal case-folds a local part (unquoted) as Postfix's tables do.
func FoldLocal(local string) string {
	if l, err := unquoteLocal(local); err == nil {
		local = l
	}
	for i := 0; i < len(local); i++ {
		if local[i] >= utf8.RuneSelf {
			// cases.Caser keeps state: one per call.
			return cases.Fold().String(local)
		}
	}
	return strings.ToLower(local)
}
