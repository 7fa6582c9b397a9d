package milter

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/token"
)

// TestPostfix puts the milter into a real Postfix's smtpd_milters and
// checks the SMTP client's view: Postfix takes the negotiated protocol,
// ordinary mail is queued, a bad subaddress token refuses that recipient
// alone, and the other verdicts reach the client as the final reply.
func TestPostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("real-Postfix end-to-end test; run without -short")
	}
	t.Parallel()
	h := newHarness(t)
	tok := h.addToken(t, func(r *token.Record) { r.UsesAllowed = 10 })
	pf := postfixtest.Start(t, postfixtest.Options{
		Milter:    "inet:" + h.addr,
		Transport: map[string]string{"example.org": "discard:"},
	})
	msg := func(extraHeader, tokenPart string) []byte {
		var b strings.Builder
		b.WriteString("From: Poster <poster@example.net>\r\nTo: board@example.org\r\nSubject: hi\r\n" + extraHeader)
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n")
		b.WriteString("--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
		if tokenPart != "" {
			b.WriteString("--b1\r\nContent-Type: text/plain; name=token\r\n\r\nLEGOTOKEN" + tokenPart + "\r\n")
		}
		b.WriteString("--b1--\r\n")
		return []byte(b.String())
	}
	submit := func(rcpts []string, data []byte) postfixtest.SubmitResult {
		t.Helper()
		res := postfixtest.Submit(pf.SMTPAddr(), sender, rcpts, data)
		if res.Mail != nil {
			t.Fatalf("MAIL FROM: %v", res.Mail)
		}
		return res
	}
	queued := func(name string, res postfixtest.SubmitResult) {
		t.Helper()
		if res.Data != nil || res.QueueID == "" {
			t.Errorf("%s: %v, want queued", name, res.Data)
		}
	}

	res := submit([]string{ordinary, "erin@example.org"}, msg("", ""))
	queued("ordinary", res)

	res = submit([]string{ordinary, board}, msg("", ""))
	wantSMTP(t, "no token", res.Data, 550, "5.7.1", "No posting token found: <board@example.org>")

	res = submit([]string{ordinary, sub(board, "nosuchtoken"), "erin@example.org"}, msg("", ""))
	wantSMTP(t, "bad subaddress", res.Rcpt[sub(board, "nosuchtoken")], 550, "5.7.1", "Unknown posting token")
	if res.Rcpt[ordinary] != nil || res.Rcpt["erin@example.org"] != nil {
		t.Errorf("ordinary recipients refused: %v", res.Rcpt)
	}
	queued("bad subaddress, ordinary recipients", res)

	res = submit([]string{sub(board, tok), board}, msg("", ""))
	queued("subaddress token", res)
	h.waitLog(t, "restricted message accepted", "queue_id="+res.QueueID, "carrier=subaddress")

	queued("header token", submit([]string{board}, msg("X-Restricted-Token: "+tok+"\r\n", "")))
	res = submit([]string{board}, msg("X-Restricted-Token: nosuchtoken\r\n", ""))
	wantSMTP(t, "bad header token", res.Data, 550, "5.7.1", "Unknown posting token")

	res = submit([]string{board}, msg("", tok))
	queued("token part", res)
	h.waitLog(t, "restricted message accepted", "queue_id="+res.QueueID, "carrier=part")

	res = submit([]string{sub(board, tok)}, msg("X-Loop: board@example.org\r\n", ""))
	wantSMTP(t, "loop", res.Data, 554, "5.4.6", "Mail loop detected")
}

func wantSMTP(t *testing.T, name string, err error, code int, enhanced, text string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Errorf("%s: %v, want %d %s", name, err, code, enhanced)
		return
	}
	gotEnhanced := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.Code != code || gotEnhanced != enhanced || !strings.Contains(se.Message, text) {
		t.Errorf("%s: %d %s %q, want %d %s %q", name, se.Code, gotEnhanced, se.Message, code, enhanced, text)
	}
}
