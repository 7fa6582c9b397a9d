// Package notice composes, DKIM-signs and sends one auto-generated mail:
// a delivery report to a sender, a sign-in link to a list owner. Such a
// mail says what it is (Auto-Submitted: auto-generated, RFC 3834 §5), is
// signed with the From domain's key like the list's copies, and goes out
// through the relay. A report goes with the null envelope sender: a bounce
// of it is never sent, so it can never start a loop or another report. A
// sign-in link names its From as the envelope sender, so that the owner's
// mistyped or dead address bounces to a mailbox someone reads.
package notice

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/rewrite"
)

// Sender sends one message; *relay.Client satisfies it.
type Sender interface {
	Send(ctx context.Context, from string, rcpts []string, body func() io.Reader, report func([]relay.Result))
}

// Mail is one notice.
type Mail struct {
	FromName string // display name; "" for none
	From     string // author address (the list's bounce address for reports)
	To       string
	Subject  string
	Text     string // plain text, UTF-8
	Hostname string // for the Message-ID
	// Kind names the notice in its Message-ID ("report", "signin"), so
	// that a log or a bounce of it says what it was; "" is "notice".
	Kind string
	// Envelope is the envelope sender; "" is the null sender.
	Envelope string
	Date     time.Time
	// Headers are extra fields (name → value), e.g. a reference to the
	// delivery reported on.
	Headers [][2]string
}

// Compose writes m as an RFC 5322 message with CRLF line endings. Text
// that is ASCII in lines of at most 998 octets goes as it is (7bit), so
// that a link in it stays whole and clickable in any reader, even one
// that shows the raw message; other text as quoted-printable UTF-8, which
// any relay takes.
func Compose(m Mail) []byte {
	var b bytes.Buffer
	from := (&mail.Address{Name: m.FromName, Address: m.From}).String()
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	kind := cmp.Or(m.Kind, "notice")
	text := strings.ReplaceAll(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(text, "\r\n") {
		text += "\r\n"
	}
	field := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	field("From", from)
	field("To", "<"+m.To+">")
	field("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	field("Date", m.Date.Format(time.RFC1123Z))
	field("Message-ID", "<"+kind+"-"+hex.EncodeToString(id)+"@"+m.Hostname+">")
	field("Auto-Submitted", "auto-generated")
	field("Precedence", "bulk")
	field("X-Auto-Response-Suppress", "All")
	for _, h := range m.Headers {
		field(h[0], h[1])
	}
	field("MIME-Version", "1.0")
	if sevenBit(text) {
		field("Content-Type", `text/plain; charset="us-ascii"`)
		field("Content-Transfer-Encoding", "7bit")
		b.WriteString("\r\n" + text)
		return b.Bytes()
	}
	field("Content-Type", `text/plain; charset="utf-8"`)
	field("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(text))
	_ = qp.Close()
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// sevenBit: text (CRLF lines) may go unencoded (RFC 5322 §2.1.1, RFC 2045
// §2.7): printable ASCII and tabs, no line longer than 998 octets.
func sevenBit(text string) bool {
	for line := range strings.SplitSeq(text, "\r\n") {
		if len(line) > 998 || strings.IndexFunc(line, func(r rune) bool { return r > 126 || r < 32 && r != '\t' }) >= 0 {
			return false
		}
	}
	return true
}

// signedFields are the fields a notice's signature covers; From and
// Subject over-signed.
var signedFields = []string{"From", "From", "To", "Subject", "Subject", "Date", "Message-ID", "Auto-Submitted",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding"}

// Sign returns msg with a DKIM-Signature by key prepended; nil key:
// msg unchanged.
func Sign(msg []byte, key *rewrite.Key) ([]byte, error) {
	if key == nil {
		return msg, nil
	}
	s, err := dkim.NewSigner(&dkim.SignOptions{
		Domain: key.Domain, Selector: key.Selector, Signer: key.Signer, Hash: crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: signedFields,
	})
	if err != nil {
		return nil, fmt.Errorf("preparing the notice's DKIM signer: %w", err)
	}
	if _, err := s.Write(msg); err != nil {
		return nil, fmt.Errorf("signing the notice: %w", err)
	}
	if err := s.Close(); err != nil {
		return nil, fmt.Errorf("signing the notice: %w", err)
	}
	return append([]byte(s.Signature()), msg...), nil
}

// ErrRefused wraps a permanent refusal of the notice by the relay: trying
// again would not help.
var ErrRefused = errors.New("the relay refused the notice")

// Send composes m, signs it with key (nil: unsigned) and sends it from
// m.Envelope. A temporary failure is an error to retry; a permanent one
// wraps ErrRefused.
func Send(ctx context.Context, s Sender, key *rewrite.Key, m Mail) error {
	msg, err := Sign(Compose(m), key)
	if err != nil {
		return err
	}
	var rerr *relay.Error
	got := false
	s.Send(ctx, m.Envelope, []string{m.To}, func() io.Reader { return bytes.NewReader(msg) }, func(rs []relay.Result) {
		for _, r := range rs {
			got = true
			if r.Err != nil {
				rerr = r.Err
			}
		}
	})
	switch {
	case rerr != nil && !rerr.Temporary:
		return fmt.Errorf("%w: %s", ErrRefused, rerr.Error())
	case rerr != nil:
		return fmt.Errorf("sending the notice: %s", rerr.Error())
	case !got:
		return errors.New("sending the notice: the relay reported nothing")
	}
	return nil
}
