package policy

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-message/charset"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/mailheader"
)

// The parsers of this file are the only ones the adapters take facts
// with, so that a From field, a loop marker or a token is read the same
// way at SMTP time, after the queue and in the dry run.

// LoopHeader is the loop marker the rewriter adds to every copy: its value
// is the list address. A message that already carries this list's marker
// came back to us (a recipient forwarding to the list, say) and is not
// distributed again.
const LoopHeader = "X-Loop"

// IsLoop reports whether one of the LoopHeader values names list.
func IsLoop(values []string, list address.Address) bool {
	for _, v := range values {
		if a, err := address.Parse(strings.TrimSpace(v)); err == nil && a.Equal(list) {
			return true
		}
	}
	return false
}

// wordDecoder decodes RFC 2047 display names in every charset go-message
// knows (windows-1252, ISO-8859-15, KOI8-R, ...): with the standard
// library's (UTF-8, ISO-8859-1 and US-ASCII only) a Nordic name would
// lose the address that follows it.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// ParseFrom parses a From field's value (folded or not), display names
// decoded: the one parser of the author, for the sender binding here and
// for the copy's From and Reply-To (package rewrite). Garbage yields none.
func ParseFrom(v string) []*mail.Address {
	p := mail.AddressParser{WordDecoder: wordDecoder}
	list, err := p.ParseList(unfold(v))
	if err != nil {
		return nil
	}
	return list
}

// FromAddresses parses a From field's value for the sender binding;
// garbage yields none (the envelope sender may still match).
func FromAddresses(v string) []address.Address {
	list := ParseFrom(v)
	out := make([]address.Address, 0, len(list))
	for _, a := range list {
		if pa, err := address.Parse(a.Address); err == nil {
			out = append(out, pa)
		}
	}
	return out
}

// maxMessageIDKey bounds a Message-ID kept as a key: longer ones are kept
// as their SHA-256, so that a unique index on them stays within
// PostgreSQL's limit for an index entry (about 2,700 bytes).
const maxMessageIDKey = 200

// MessageIDKey turns a Message-ID field's value into the key that
// recognises the message when it arrives again through another MX host:
// the first <...> of the unfolded value (comments and spaces around it
// dropped), or the trimmed value when it has none; "" when the field is
// missing or empty. A long one becomes "sha256:" and its hash.
func MessageIDKey(v string) string {
	v = strings.TrimSpace(unfold(v))
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			v = v[i : i+j+1]
		}
	}
	if v == "<>" {
		return ""
	}
	if len(v) > maxMessageIDKey {
		sum := sha256.Sum256([]byte(v))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	return v
}

func unfold(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(s)
}

// ReadFacts reads, from a whole message, the facts for group g judged by
// rules: the loop marker, the From field and the token (g's subaddress
// token first, then the token header, then a token part). The envelope
// sender, the time and the token's record are the caller's. An unreadable
// header is a fact (Malformed); an I/O error is returned.
func ReadFacts(r io.Reader, rules *Rules, g Group) (Facts, error) {
	f := Facts{List: g.List, Token: g.Token, HeaderRead: true, BodyRead: true}
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := mailheader.Read(br)
	switch {
	case errors.Is(err, mailheader.ErrTooLarge):
		f.Unreadable = true
		return f, nil
	case err != nil:
		return f, err
	}
	f.Loop = IsLoop(h.Values(LoopHeader), g.List.Addr)
	f.HeaderFrom = FromAddresses(h.Get("From"))
	f.MessageID = MessageIDKey(h.Get("Message-ID"))
	if f.Token == "" {
		if f.Token = rules.Finder.InHeader(&h); f.Token == "" {
			f.Token, err = rules.Finder.InBody(h.Get("Content-Type"), br)
			switch {
			case errors.Is(err, mailheader.ErrTooLarge):
				f.Unreadable = true // a part's header beyond the limit
			case err != nil:
				return f, err
			}
		}
	}
	return f, nil
}
