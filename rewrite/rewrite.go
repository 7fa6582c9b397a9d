// Package rewrite produces the copy of a message that a restricted list
// redistributes: the author moved to Reply-To and the list in From (so that
// the copy passes DMARC, RFC 7489 §5 / RFC 6377), the trace and
// authentication fields of the original hop removed, list fields added
// (RFC 2369, RFC 2919), every token carrier removed, and a DKIM signature of
// the list's domain made over the result.
//
// The rewrite streams: the header is read with mailheader (every kept field
// keeps its raw bytes) and rebuilt through go-message's textproto; the body
// is copied as received, except for token parts, which token.Finder drops
// byte-exactly, and for what the scrub (scrub.go) finds of a token in what
// a reader sees: the bytes, decoded header words (words.go), decoded text
// parts (parts.go). Line endings are normalised to CRLF, as they travel on
// the wire and as DKIM signs them.
package rewrite

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

// Copy describes the copy to produce for one delivery.
type Copy struct {
	List       *policy.List
	Lists      []address.Address // every restricted address; their subaddress tokens are scrubbed
	Delimiter  string            // recipient_delimiter
	HideSender bool              // the list's or the token's choice
	Finder     token.Finder      // token-file prefix and token header
	Token      string            // the token used, scrubbed wherever it still appears
	// SpoolDir is where a text part larger than 1 MiB that must be
	// decoded is kept while it is read (an unlinked temporary file); ""
	// is os.TempDir().
	SpoolDir string
	// MessageID and Date are used when the message has none. They must be
	// the same on every hand-over of a delivery, so that recipients reached
	// on a retry get the same copy as the others.
	MessageID string
	Date      time.Time
	Key       *Key // nil: the copy is not signed
}

// Result describes a written copy.
type Result struct {
	// Signature is the DKIM-Signature field (with its CRLF) to put in
	// front of the copy; "" when unsigned.
	Signature    string
	RemovedParts int   // token parts removed from the body
	Size         int64 // bytes written, without the signature
}

// Write reads the received message from r and writes the copy to w.
func Write(w io.Writer, r io.Reader, c Copy) (Result, error) {
	var res Result
	sink := w
	var signer *dkimSigner
	if c.Key != nil {
		s, err := newSigner(c.Key)
		if err != nil {
			return res, err
		}
		signer = &dkimSigner{s: s}
		// The signer runs a goroutine until it is closed, also on error.
		defer signer.close()
		sink = io.MultiWriter(w, s)
	}
	// Normalise before the split, so that the file and the signer see the
	// same bytes.
	out := &crlfWriter{w: sink}
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := mailheader.Read(br)
	if err != nil {
		return res, fmt.Errorf("reading the received message: %w", err)
	}
	nh := c.header(&h)
	if err := textproto.WriteHeader(out, nh); err != nil {
		return res, fmt.Errorf("writing the copy's header: %w", err)
	}
	if res.RemovedParts, err = c.body(out, &h, br); err != nil {
		return res, err
	}
	res.Size = out.n
	if signer != nil {
		if res.Signature, err = signer.finish(); err != nil {
			return res, fmt.Errorf("signing the copy for %s: %w", c.Key.Domain, err)
		}
	}
	return res, nil
}

func (c *Copy) body(out io.Writer, h *textproto.Header, br *bufio.Reader) (int, error) {
	sc := newBodyScrubber(out, c.Finder.Prefix, c.Token, c.SpoolDir, c.scrubInner) // parts.go
	defer sc.spool.close()
	contentType := h.Get("Content-Type")
	var err error
	if token.OneLeaf(contentType) {
		// The walker reads such a body as one leaf: its header is the
		// message's.
		err = sc.BeginContent(*h)
	}
	removed := 0
	if err == nil {
		_, removed, err = c.Finder.StripParts(sc, contentType, br)
	}
	if err == nil {
		err = sc.flush()
	}
	if err != nil {
		return removed, fmt.Errorf("copying the body: %w", err)
	}
	return removed, nil
}

// header returns the copy's header: the kept fields of h in their order
// and bytes (scrubbed of tokens), under the fields the list adds.
func (c *Copy) header(h *textproto.Header) textproto.Header {
	from := policy.ParseFrom(h.Get("From")) // an unreadable From: the copy is from the list alone
	hadReplyTo := h.Has("Reply-To")
	hadMessageID := h.Has("Message-Id")
	hadDate := h.Has("Date")

	m := newMatcher(c.Finder.Prefix, c.Token)
	var kept [][]byte
	for f := h.Fields(); f.Next(); {
		if c.drop(f.Key()) {
			continue
		}
		raw, err := f.Raw()
		if err != nil {
			continue
		}
		kept = append(kept, c.scrub(&m, raw))
	}
	var nh textproto.Header
	// AddRaw and Add put a field at the top: add bottom to top.
	for i := len(kept) - 1; i >= 0; i-- {
		nh.AddRaw(kept[i])
	}
	if !hadDate {
		nh.Add("Date", c.Date.Format(time.RFC1123Z))
	}
	if !hadMessageID {
		nh.Add("Message-Id", c.MessageID)
	}
	nh.Add(policy.LoopHeader, c.List.Addr.String())
	nh.Add("Precedence", "list")
	// RFC 2369 §3.4: "NO" marks a list that its readers cannot post to.
	nh.Add("List-Post", "NO")
	nh.Add("List-Id", formatAddress(c.List.Name, c.List.ID()))
	// The author's names are decoded from RFC 2047 and written anew:
	// scrubbed before they are encoded again.
	for _, a := range from {
		a.Name = string(m.scrubBytes([]byte(a.Name)))
	}
	if !c.HideSender && len(from) > 0 && !hadReplyTo {
		nh.Add("Reply-To", string(c.scrub(&m, []byte(formatList(from)))))
	}
	nh.Add("From", string(c.scrub(&m, []byte(c.fromField(from)))))
	return nh
}

// fromField is the new From: the list's address under the author's name,
// or the list's name alone when the sender is hidden.
func (c *Copy) fromField(from []*mail.Address) string {
	name := c.List.Name
	if !c.HideSender && len(from) > 0 {
		author := from[0].Name
		if author == "" {
			author = from[0].Address
		}
		name = author + " via " + c.List.Name
	}
	return (&mail.Address{Name: name, Address: c.List.Addr.String()}).String()
}

// dropped are the fields of the received message that do not belong in the
// copy: the previous hop's trace and authentication results (they would be
// wrong for the copy, and DKIM/ARC signatures would fail), requests aimed at
// the original recipient, the token header, and the fields the list sets
// itself. Names are canonical MIME keys.
var dropped = map[string]bool{
	"Received": true, "Return-Path": true, "Dkim-Signature": true,
	"Authentication-Results": true, "Received-Spf": true, "Domainkey-Signature": true,
	"Delivered-To": true, "X-Original-To": true, "Bcc": true,
	"Disposition-Notification-To": true, "Return-Receipt-To": true, "X-Confirm-Reading-To": true,
	"Precedence": true, "Sender": true, "Errors-To": true, "From": true,
}

// hiddenDropped also go when the sender is hidden: they name the author.
var hiddenDropped = map[string]bool{
	"Reply-To": true, "X-Sender": true, "X-Original-From": true, "X-Original-Sender": true,
	"X-Originating-Ip": true, "X-Authenticated-Sender": true,
}

func (c *Copy) drop(key string) bool {
	switch {
	case dropped[key]:
		return true
	case strings.HasPrefix(key, "Arc-"), strings.HasPrefix(key, "List-"):
		return true
	case strings.EqualFold(key, c.Finder.Header):
		return true
	case c.HideSender && hiddenDropped[key]:
		return true
	}
	return false
}

// scrub removes tokens from a kept field: restricted addresses written with
// a subaddress lose it (To: board+TOKEN@example.org), and the rules of
// scrub.go apply to the field as its reader sees it (decoded words and
// parameters) and to its bytes.
func (c *Copy) scrub(m *matcher, raw []byte) []byte {
	raw = scrubSubaddresses(raw, c.Lists, c.Delimiter)
	raw = scrubParams(m, scrubWords(m, raw))
	return m.scrubBytes(raw)
}

// scrubInner scrubs a field of a header inside the body — of a part, or
// of a forwarded message — as a field of the message's own header, and
// replaces the token of a token header there: a forwarded message's, which
// goes as the walker's forwarded token parts go. The byte-level scrub
// follows in the stream.
func (c *Copy) scrubInner(m *matcher, raw []byte) []byte {
	raw = scrubSubaddresses(raw, c.Lists, c.Delimiter)
	if name, value, ok := bytes.Cut(raw, []byte(":")); ok {
		if tok := c.Finder.InHeaderField(string(name), string(value)); tok != "" {
			value = bytes.Replace(value, []byte(tok), []byte(removedMarker), 1)
			raw = append(append(name[:len(name):len(name)], ':'), value...)
		}
	}
	return scrubParams(m, scrubWords(m, raw))
}

func formatList(as []*mail.Address) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}

// formatAddress writes "phrase <id>" with the phrase quoted or RFC 2047
// encoded as needed; net/mail's formatter does both.
func formatAddress(name, id string) string {
	s := (&mail.Address{Name: name, Address: "x@x"}).String()
	return strings.TrimSuffix(s, "<x@x>") + "<" + id + ">"
}

// scrubSubaddresses turns local+ext@domain into local@domain wherever the
// base is a restricted address and ext is a token-like word.
func scrubSubaddresses(raw []byte, lists []address.Address, delim string) []byte {
	if delim == "" || len(lists) == 0 || bytes.IndexByte(raw, '@') < 0 {
		return raw
	}
	// ASCII folding keeps lower's indexes valid in raw (see replaceFold):
	// bytes.ToLower made an 8-bit header scrub the wrong bytes.
	lower := append([]byte(nil), raw...)
	lowerASCII(lower)
	for _, l := range lists {
		local := strings.ToLower(l.Local)
		tail := []byte("@" + strings.ToLower(l.Domain))
		for from := 0; ; {
			at := bytes.Index(lower[from:], tail)
			if at < 0 {
				break
			}
			at += from
			from = at + len(tail)
			// Walk back over the extension, then the delimiter, then the local part.
			e := at
			for e > 0 && isTokenByte(lower[e-1]) {
				e--
			}
			if e == at || e == 0 || !strings.ContainsRune(delim, rune(lower[e-1])) {
				continue
			}
			s := e - 1 - len(local)
			if s < 0 || string(lower[s:e-1]) != local || (s > 0 && isAtext(lower[s-1])) {
				continue
			}
			cut := at - (e - 1)
			raw = append(raw[:e-1], raw[at:]...)
			lower = append(lower[:e-1], lower[at:]...)
			from -= cut
		}
	}
	return raw
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func isAtext(c byte) bool {
	return isTokenByte(c) || c >= 0x80 || strings.IndexByte("!#$%&'*+/=?^`{|}~.", c) >= 0
}
