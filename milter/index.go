package milter

import (
	"strings"
	"unicode/utf8"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
)

// index answers "may this recipient be a restricted address?" for one
// configuration without allocating, so that ordinary recipients cost no
// parsing. It is conservative: it may say yes for an address that
// policy.Rules.ListFor then finds ordinary, never no for one that ListFor finds
// restricted.
type index struct {
	rules *policy.Rules
	keys  map[string]struct{} // address.Key of every list address
	delim string              // the recipient delimiter
}

func newIndex(rules *policy.Rules) *index {
	x := &index{rules: rules, keys: make(map[string]struct{}, len(rules.Lists)), delim: rules.Delimiter}
	for _, k := range rules.Keys() {
		x.keys[k] = struct{}{}
	}
	return x
}

// mayBeRestricted mirrors policy.Rules.Resolve for plain ASCII addresses: the key is the lower-cased local part and domain (without a
// trailing dot), tried whole and then without the subaddress. Anything
// unusual (non-ASCII, which IDNA may map) is handed to the real parser.
func (x *index) mayBeRestricted(rcpt string) bool {
	if len(x.keys) == 0 {
		return false
	}
	s := strings.TrimSpace(rcpt)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = s[1 : len(s)-1]
	}
	if s == "" || len(s) > address.MaxLength {
		return false // address.Parse refuses it: never a list
	}
	if s[0] == '@' {
		return true // a source route: the real parser removes it
	}
	for i := 0; i < len(s); i++ {
		// Non-ASCII (folded as Postfix folds it), quotes and escapes (removed
		// as Postfix removes them) go to the real parser.
		if c := s[i]; c >= utf8.RuneSelf || c == '"' || c == '\\' {
			return true
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return false
	}
	local, domain := s[:at], strings.TrimSuffix(s[at+1:], ".")
	var buf [address.MaxLength + 1]byte
	if x.has(buf[:], local, domain) {
		return true
	}
	if x.delim == "" {
		return false
	}
	if i := strings.IndexAny(local, x.delim); i > 0 {
		return x.has(buf[:], local[:i], domain)
	}
	return false
}

// has looks local@domain up, lower-cased into buf. The map index with
// string(bytes) does not allocate.
func (x *index) has(buf []byte, local, domain string) bool {
	n := lowerInto(buf, local)
	buf[n] = '@'
	n++
	n += lowerInto(buf[n:], domain)
	_, ok := x.keys[string(buf[:n])]
	return ok
}

func lowerInto(dst []byte, s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return len(s)
}
