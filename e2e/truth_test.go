package e2e

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/token"
)

// outsiderMessage is a message to board@ carrying tok as a base64 token file,
// with cc written in its Cc field.
func outsiderMessage(id, tok, cc string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Alice <%s>\r\nTo: Example Board <%s>\r\n", author, list)
	if cc != "" {
		fmt.Fprintf(&b, "Cc: %s\r\n", cc)
	}
	fmt.Fprintf(&b, "Subject: %s\r\nMessage-ID: <%s>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n", id, id)
	b.WriteString("--b1\r\nContent-Type: text/plain\r\n\r\nMinutes.\r\n")
	if tok != "" {
		fmt.Fprintf(&b, "--b1\r\nContent-Type: text/plain; name=\"token.txt\"\r\nContent-Disposition: attachment; filename=\"token.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n",
			base64.StdEncoding.EncodeToString(token.FileContent("RMTOKEN", tok)))
	}
	b.WriteString("--b1--\r\n")
	return []byte(b.String())
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// TestOutsidersNeverGetAToken: a tokened message (a two-use token) for
// board@ that also goes to an outsider — in Cc, in Bcc, with the token as a
// file, a header or a subaddress — is refused at SMTP time: the outsider
// gets nothing, nothing is queued, and the token is still the sender's to
// use, on a message to the list alone.
func TestOutsidersNeverGetAToken(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	tok, _ := w.issueCLI("--uses", "2")
	const outsider = "outsider@example.net"
	sent := 0
	for i, c := range []struct {
		rcpts []string
		cc    string
		extra string
	}{
		{[]string{list, outsider}, outsider, ""},
		{[]string{list, outsider}, "", ""}, // Bcc
		{[]string{outsider, "board+" + tok + "@example.org"}, outsider, ""},
		{[]string{list, outsider}, outsider, "header"},
	} {
		sent++
		id := fmt.Sprintf("outsider-%d@example.net", i)
		msg := outsiderMessage(id, tok, c.cc)
		if c.extra == "header" {
			msg = []byte(strings.Replace(string(outsiderMessage(id, "", c.cc)), "Subject:", "X-Restricted-Token: "+tok+"\r\nSubject:", 1))
		}
		res := w.submit(author, c.rcpts, msg)
		if smtpCode(res.Data) != 550 || !strings.Contains(res.Data.Error(), "would reach other recipients") {
			t.Errorf("case %d: %v, want 550 … would reach other recipients", i, res.Data)
		}
	}
	w.pf.Flush(t)
	if q := w.pf.Queue(t); len(q) != 0 {
		t.Errorf("queued: %d", len(q))
	}
	if ms := w.sink.Messages(); len(ms) != 0 {
		t.Errorf("%d messages reached the outsider's side (or a bounce went out)", len(ms))
	}
	if ms := w.relay.Messages(); len(ms) != 0 {
		t.Errorf("%d copies distributed", len(ms))
	}
	// The token was not spent: the sender writes to the list alone.
	if res := w.submit(author, []string{list}, outsiderMessage("outsider-ok@example.net", tok, "")); res.Data != nil {
		t.Fatalf("to the list alone: %v", res.Data)
	}
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.relay.Recipients(), defaultMembers)
	t.Logf("RELIABILITY scenario=token-with-outsiders-refused-at-smtp-time messages=%d lost=0 duplicated=0 leaked=%d panics=%d",
		sent+1, len(w.sink.Messages()), strings.Count(w.rm.log.String(), "panic"))
}

// TestGuardIsNoLever: every client is 127.0.0.1 here — a shared upstream.
// A guesser sends made-up tokens with the victim's address as envelope
// sender until it gets 450; the victim's valid token (same client, same
// sender) and another sender's are delivered all the same, and the
// guesser's next guess is still held back.
func TestGuardIsNoLever(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, set: map[string]string{"tokens.guess_limit": "3"}})
	const victim = "victim@example.net"
	guess := func(i int) error {
		return w.submit(victim, []string{list}, outsiderMessage(fmt.Sprintf("guess-%d@example.net", i), token.Generate(), "")).Data
	}
	for i := range 3 {
		if err := guess(i); smtpCode(err) != 550 {
			t.Fatalf("guess %d: %v, want 550 unknown token", i, err)
		}
	}
	if err := guess(3); smtpCode(err) != 450 {
		t.Fatalf("guess past the limit: %v, want 450 4.7.1", err)
	}
	valid := token.Generate()
	w.issue(valid, func(r *token.Record) { r.UsesAllowed = 2; r.Sender = victim })
	msg := []byte(strings.Replace(string(outsiderMessage("victim@example.net", valid, "")), "From: Alice <"+author+">", "From: Victim <"+victim+">", 1))
	if res := w.submit(victim, []string{list}, msg); res.Data != nil {
		t.Fatalf("the victim's valid token from the guesser's client: %v, want queued", res.Data)
	}
	other := token.Generate()
	w.issue(other, nil)
	if res := w.submit(author, []string{list}, outsiderMessage("other@example.net", other, "")); res.Data != nil {
		t.Fatalf("another sender behind the same client: %v, want queued", res.Data)
	}
	if err := guess(4); smtpCode(err) != 450 {
		t.Errorf("the guesser afterwards: %v, want 450", err)
	}
	w.relay.WaitRecipients(t, 2*len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	t.Logf("RELIABILITY scenario=guesser-with-forged-victim-sender-behind-shared-client messages=7 lost=0 duplicated=0 leaked=0 panics=%d",
		strings.Count(w.rm.log.String(), "panic"))
}
