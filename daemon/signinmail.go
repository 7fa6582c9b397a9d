package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/rewrite"
)

// signInMailer sends the web page's sign-in mails through the relay of
// the generation in force, DKIM-signed with the sender domain's key like
// the copies (web.Mailer). The sender is [web] sign_in_from, by default
// the first list's bounce address, which also collects their bounces.
type signInMailer struct {
	gen  func() *generation.Generation
	now  func() time.Time
	host string
}

// Send writes a plain-text mail to to and hands it to the relay; it fails
// unless the relay accepted it.
func (m *signInMailer) Send(ctx context.Context, to address.Address, subject, body string) error {
	g := m.gen()
	from := g.Config.Web.From
	msg, err := composeMail(from, to, subject, body, m.now(), m.host)
	if err != nil {
		return err
	}
	if k := g.Config.KeyFor(from.Domain); k != nil {
		sig, err := rewrite.Sign(&rewrite.Key{Domain: k.Domain, Selector: k.Selector, Signer: k.Signer}, msg)
		if err != nil {
			return fmt.Errorf("signing the sign-in mail: %w", err)
		}
		msg = append([]byte(sig), msg...)
	}
	var failure error
	g.Relay.Send(ctx, from.String(), []string{to.String()}, func() io.Reader { return bytes.NewReader(msg) }, func(rs []relay.Result) {
		for _, r := range rs {
			if r.Err != nil {
				failure = r.Err
			}
		}
	})
	if failure != nil {
		return fmt.Errorf("relaying the sign-in mail: %w", failure)
	}
	return nil
}

// composeMail writes the mail, marked as automatic (RFC 3834) so that
// nobody auto-replies. English text goes as 7bit, so that the link stays
// whole in the raw message; other text as quoted-printable UTF-8, which any
// relay takes.
func composeMail(from, to address.Address, subject, body string, now time.Time, host string) ([]byte, error) {
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	plain := true
	for _, line := range strings.Split(body, "\r\n") {
		if len(line) > 998 || strings.IndexFunc(line, func(r rune) bool { return r > 126 || r < 32 && r != '\t' }) >= 0 {
			plain = false
		}
	}
	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", from.String())
	hdr("To", to.String())
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Message-ID", "<signin."+hex.EncodeToString(id)+"@"+host+">")
	hdr("Auto-Submitted", "auto-generated")
	hdr("MIME-Version", "1.0")
	if plain {
		hdr("Content-Type", "text/plain; charset=us-ascii")
		hdr("Content-Transfer-Encoding", "7bit")
		b.WriteString("\r\n" + body)
		return b.Bytes(), nil
	}
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := io.WriteString(qp, body); err != nil {
		return nil, fmt.Errorf("writing the sign-in mail: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("writing the sign-in mail: %w", err)
	}
	return b.Bytes(), nil
}
