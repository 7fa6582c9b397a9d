package token

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/mailheader"
)

// Finder finds token carriers in messages and removes them.
type Finder struct {
	Prefix string // token-file prefix, e.g. "RMTOKEN" or LEGO's "LEGOTOKEN"
	Header string // header field that may carry the token
}

// InHeaderField returns the token carried by one header field, or "" when
// the field is not the token header or holds no token.
func (f Finder) InHeaderField(name, value string) string {
	if !strings.EqualFold(strings.TrimSpace(name), f.Header) {
		return ""
	}
	return leadingToken([]byte(strings.TrimSpace(value)))
}

// InHeader returns the token of the first token header field in h.
func (f Finder) InHeader(h *textproto.Header) string {
	for fields := h.FieldsByKey(f.Header); fields.Next(); {
		if tok := leadingToken([]byte(strings.TrimSpace(fields.Value()))); tok != "" {
			return tok
		}
	}
	return ""
}

// InBody returns the token of the first token part of a body whose
// Content-Type is contentType. It stops reading at the token part, and
// holds at most a few kilobytes of the body in memory at any time.
func (f Finder) InBody(contentType string, body io.Reader) (string, error) {
	w := newWalker(f.Prefix, body, nil)
	err := w.walk(contentType)
	if errors.Is(err, errStop) {
		err = nil
	}
	if err != nil {
		return "", fmt.Errorf("reading message body: %w", err)
	}
	return w.first, nil
}

// StripParts copies body to out without any token part, byte for byte
// otherwise, and returns the first token removed and the number of parts
// removed.
func (f Finder) StripParts(out io.Writer, contentType string, body io.Reader) (first string, removed int, err error) {
	w := newWalker(f.Prefix, body, out)
	if err := w.walk(contentType); err != nil {
		return w.first, w.removed, fmt.Errorf("copying message body: %w", err)
	}
	return w.first, w.removed, nil
}

// Find reads a whole message and returns the token of its header carrier,
// or else of its first token part. It reads the body only when the header
// holds no token.
func (f Finder) Find(r io.Reader) (Found, error) {
	br := bufio.NewReaderSize(r, readBuffer)
	h, err := mailheader.Read(br)
	if err != nil {
		return Found{}, err
	}
	if tok := f.InHeader(&h); tok != "" {
		return Found{Token: tok, Carrier: CarrierHeader}, nil
	}
	tok, err := f.InBody(h.Get("Content-Type"), br)
	if err != nil || tok == "" {
		return Found{}, err
	}
	return Found{Token: tok, Carrier: CarrierPart}, nil
}

// FromExtension returns the token an address extension carries: the
// extension itself when it is made of token characters only, else "".
func FromExtension(ext string) string {
	if t := leadingToken([]byte(ext)); t == ext {
		return t
	}
	return ""
}

// Subaddress returns the base address and the token carried in the
// extension of rcpt (board+TOKEN@example.org), if the extension is made of
// token characters only.
func Subaddress(rcpt address.Address, delimiter string) (base address.Address, tok string) {
	base, ext, ok := rcpt.SplitSubaddress(delimiter)
	if !ok {
		return rcpt, ""
	}
	if t := leadingToken([]byte(ext)); t == ext {
		return base, t
	}
	return base, ""
}
