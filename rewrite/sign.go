package rewrite

import (
	"crypto"
	"fmt"
	"io"

	"github.com/emersion/go-msgauth/dkim"
)

// signedFields are the fields the list's signature covers (RFC 6376
// §5.4.1). Those listed twice are over-signed: a second instance added on
// the way (a forged From, a second List-Id) breaks the signature instead of
// riding on it.
var signedFields = []string{
	"From", "From", "Reply-To", "Reply-To", "Subject", "Subject", "Date", "To", "Cc",
	"Message-Id", "In-Reply-To", "References", "Mime-Version",
	"Content-Type", "Content-Transfer-Encoding",
	"List-Id", "List-Id", "List-Post", "List-Post", "Precedence", "X-Loop",
}

// Key is a DKIM signing key of one domain.
type Key struct {
	Domain   string
	Selector string
	Signer   crypto.Signer // RSA or Ed25519
}

// newSigner returns go-msgauth's streaming signer for key: relaxed/relaxed
// (survives the re-folding relays do), SHA-256, RSA or Ed25519 by key type.
func newSigner(key *Key) (*dkim.Signer, error) {
	s, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 key.Domain,
		Selector:               key.Selector,
		Signer:                 key.Signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             signedFields,
	})
	if err != nil {
		return nil, fmt.Errorf("preparing the DKIM signer for %s: %w", key.Domain, err)
	}
	return s, nil
}

// crlfWriter turns bare LF line endings into CRLF, the form a message has
// on the wire and the form DKIM canonicalisation expects. CRLF passes
// unchanged; a lone CR is left alone.
type crlfWriter struct {
	w      io.Writer
	prevCR bool
	n      int64
	buf    []byte
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	c.buf = c.buf[:0]
	start := 0
	for i, b := range p {
		if b == '\n' && !(i == 0 && c.prevCR || i > 0 && p[i-1] == '\r') {
			c.buf = append(c.buf, p[start:i]...)
			c.buf = append(c.buf, '\r', '\n')
			start = i + 1
		}
	}
	if len(p) > 0 {
		c.prevCR = p[len(p)-1] == '\r'
	}
	out := p
	if start > 0 {
		out = append(c.buf, p[start:]...)
		c.buf = out
	}
	n, err := c.w.Write(out)
	c.n += int64(n)
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// dkimSigner closes go-msgauth's signer exactly once, whether the copy
// was completed (finish) or abandoned (close).
type dkimSigner struct {
	s      *dkim.Signer
	closed bool
}

func (d *dkimSigner) finish() (string, error) {
	d.closed = true
	if err := d.s.Close(); err != nil {
		return "", err
	}
	return d.s.Signature(), nil
}

func (d *dkimSigner) close() {
	if !d.closed {
		d.closed = true
		_ = d.s.Close()
	}
}

// Sign returns the DKIM-Signature field (with its CRLF) that key makes
// for msg, a whole message with CRLF line endings, signed as the copies
// are: the mails restrictedmail writes itself (sign-in links) pass DMARC
// the same way.
func Sign(key *Key, msg []byte) (string, error) {
	s, err := newSigner(key)
	if err != nil {
		return "", err
	}
	d := &dkimSigner{s: s}
	defer d.close()
	if _, err := s.Write(msg); err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return d.finish()
}
