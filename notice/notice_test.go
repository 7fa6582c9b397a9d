package notice

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/rewrite"
)

type sender struct {
	from  string
	rcpts []string
	data  []byte
	err   *relay.Error
}

func (s *sender) Send(_ context.Context, from string, rcpts []string, body func() io.Reader, report func([]relay.Result)) {
	s.from, s.rcpts = from, rcpts
	s.data, _ = io.ReadAll(body())
	report([]relay.Result{{Rcpt: rcpts[0], Err: s.err}})
}

// TestSend: a notice is an auto-generated message from the given author,
// signed (go-msgauth verifies it), sent with the null envelope sender; its
// UTF-8 text survives quoted-printable; a permanent refusal is ErrRefused.
func TestSend(t *testing.T) {
	t.Parallel()
	key := dkimtest.NewKey(t, "rsa", "example.org", "rm1")
	k := &rewrite.Key{Domain: "example.org", Selector: "rm1", Signer: key.Config.Signer}
	s := &sender{}
	m := Mail{FromName: "Example Board", From: "board-bounces@example.org", To: "alice@example.net", Subject: "Delivery report: Straße",
		Text: "Your message reached 3 of 5 recipients.\nFailed: x@example.net (550 5.1.1 user unknown) — ø\n", Hostname: "mx.example.org", Date: time.Now()}
	if err := Send(context.Background(), s, k, m); err != nil {
		t.Fatal(err)
	}
	if s.from != "" || len(s.rcpts) != 1 || s.rcpts[0] != "alice@example.net" {
		t.Errorf("envelope %q → %v", s.from, s.rcpts)
	}
	if got := dkimtest.VerifyGo(t, s.data, key); len(got) != 1 {
		t.Errorf("DKIM: %v", got)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(s.data))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Auto-Submitted") != "auto-generated" || !strings.Contains(msg.Header.Get("From"), "<board-bounces@example.org>") {
		t.Errorf("header: %v", msg.Header)
	}
	if subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil || subj != m.Subject {
		t.Errorf("subject %q, %v", subj, err)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if string(body) != strings.ReplaceAll(m.Text, "\n", "\r\n") {
		t.Errorf("body %q", body)
	}
	s.err = &relay.Error{Code: 550, Message: "no"}
	if err := Send(context.Background(), s, nil, m); !errors.Is(err, ErrRefused) {
		t.Errorf("refused: %v", err)
	}
	s.err = &relay.Error{Temporary: true, Code: 451, Message: "later"}
	if err := Send(context.Background(), s, nil, m); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("temporary: %v", err)
	}
}

// TestSendPlainText: ASCII text goes unencoded, so that a long link stays
// whole in the raw message; the envelope sender is the one asked for; the
// Message-ID names the kind of notice.
func TestSendPlainText(t *testing.T) {
	t.Parallel()
	link := "https://lists.example.org/signin/link?t=" + strings.Repeat("x", 60)
	s := &sender{}
	m := Mail{From: "board-bounces@example.org", Envelope: "board-bounces@example.org", To: "owner@example.net", Subject: "Sign in",
		Text: "Hello,\nopen " + link + "\n", Hostname: "mx.example.org", Date: time.Now(), Kind: "signin"}
	if err := Send(context.Background(), s, nil, m); err != nil {
		t.Fatal(err)
	}
	if s.from != "board-bounces@example.org" {
		t.Errorf("envelope sender %q", s.from)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(s.data))
	if err != nil {
		t.Fatal(err)
	}
	if cte := msg.Header.Get("Content-Transfer-Encoding"); cte != "7bit" {
		t.Errorf("ASCII text as %q", cte)
	}
	if id := msg.Header.Get("Message-Id"); !strings.HasPrefix(id, "<signin-") {
		t.Errorf("Message-ID %q", id)
	}
	if !bytes.Contains(s.data, []byte("\r\nopen "+link+"\r\n")) {
		t.Errorf("link not whole in the raw message:\n%s", s.data)
	}
	m.Text = strings.Repeat("y", 999)
	if err := Send(context.Background(), s, nil, m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(s.data, []byte("quoted-printable")) {
		t.Errorf("a 999-octet line went unencoded")
	}
}
