package daemon

import (
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/notice"
	"github.com/restrictedmail/restrictedmail/rewrite"
)

// TestSignInMailSigned: the sign-in mail is a well-formed, automatic,
// UTF-8 text mail whose DKIM signature verifies.
func TestSignInMailSigned(t *testing.T) {
	from, _ := address.Parse("board-bounces@example.org")
	to, _ := address.Parse("sekretær@example.org")
	body := "Hei,\r\nåpne https://lists.example.org/signin/link?t=" + strings.Repeat("x", 43) + "\r\n" + strings.Repeat("lang linje ", 20) + "\r\n"
	msg := notice.Compose(signInMail(from, to, "Logg inn på Begrenset e-post", body, time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC), "mx.example.org"))
	key := dkimtest.NewKey(t, "rsa", "example.org", "rm1")
	signed, err := notice.Sign(msg, &rewrite.Key{Domain: "example.org", Selector: "rm1", Signer: key.Config.Signer})
	if err != nil {
		t.Fatal(err)
	}
	if d := dkimtest.VerifyGo(t, signed, key); len(d) != 1 || d[0] != "example.org" {
		t.Fatalf("DKIM: %v", d)
	}
	m, err := mail.ReadMessage(bytes.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil || subj != "Logg inn på Begrenset e-post" {
		t.Errorf("subject %q, %v", subj, err)
	}
	for k, want := range map[string]string{"Auto-Submitted": "auto-generated", "From": "<board-bounces@example.org>", "Date": "Fri, 04 Dec 2026 10:00:00 +0000"} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if id := m.Header.Get("Message-Id"); !strings.HasPrefix(id, "<signin-") || !strings.HasSuffix(id, "@mx.example.org>") {
		t.Errorf("Message-ID %q", id)
	}
	if m.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Errorf("Norwegian text as %q", m.Header.Get("Content-Transfer-Encoding"))
	}
	got, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
	if string(got) != body {
		t.Errorf("body %q, want %q", got, body)
	}
	for _, line := range bytes.Split(msg, []byte("\r\n")) {
		if len(line) > 78 {
			t.Errorf("line longer than 78: %q", line)
		}
	}
}
