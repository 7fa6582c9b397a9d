package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/token"
)

func wantReply(t *testing.T, what string, err error, code int, enhanced, text string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Errorf("%s: got %v, want %d %s %q", what, err, code, enhanced, text)
		return
	}
	got := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.Code != code || got != enhanced || !strings.Contains(se.Message, text) {
		t.Errorf("%s: got %d %s %q, want %d %s %q", what, se.Code, got, se.Message, code, enhanced, text)
	}
}

// TestMilterRejectsAtSMTPTime: Postfix with the daemon's milter refuses a
// tokenless message to a restricted address at the end of DATA — also when
// its first recipient is ordinary — and a bad subaddress token at RCPT;
// nothing is queued, nothing reaches the relay.
func TestMilterRejectsAtSMTPTime(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	res := w.submit(author, []string{"someone@example.org", list}, tokenMessage("", "", ""))
	wantReply(t, "no token", res.Data, 550, "5.7.1", "No posting token found: <board@example.org>")
	if res.QueueID != "" {
		t.Errorf("a rejected message was queued as %s", res.QueueID)
	}

	res = w.submit(author, []string{"board+nosuchtoken1@example.org"}, tokenMessage("", "", ""))
	wantReply(t, "bad subaddress", res.Rcpt["board+nosuchtoken1@example.org"], 550, "5.7.1", "Unknown posting token")

	w.issue("usedtoken1", func(r *token.Record) { r.UsesSpent = 1 })
	res = w.submit(author, []string{list}, tokenMessage("usedtoken1", "RMTOKEN", ""))
	wantReply(t, "used token", res.Data, 550, "5.7.1", "Posting token already used")

	if q := w.pf.Queue(t); len(q) != 0 {
		t.Errorf("Postfix queued %d messages after rejections: %+v", len(q), q)
	}
	if n := len(w.relay.Messages()); n != 0 {
		t.Errorf("the relay received %d messages", n)
	}
	if lines := w.rm.log.lines("component=milter", "reason=no_token"); len(lines) != 1 {
		t.Errorf("want one milter log line for the tokenless message, got %q", lines)
	}
}

// TestOrdinaryMailUntouched: mail for an ordinary address passes the
// milter and reaches its destination with its header byte for byte (Postfix
// adds only its Received field on top).
func TestOrdinaryMailUntouched(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	msg := []byte("From: Alice <alice@example.net>\r\nTo: someone@example.org\r\nSubject: lunch?\r\n" +
		"Message-ID: <ordinary-1@example.net>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" +
		"X-Folded: a header\r\n\tfolded  with  odd   spacing\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nSee you at noon.\r\n")
	res := w.submit(author, []string{"someone@example.org"}, msg)
	if res.Data != nil {
		t.Fatalf("ordinary mail refused: %v", res.Data)
	}
	w.sink.WaitRecipients(t, 1, waitMail)
	got := w.sink.Messages()[0].Data
	if !bytes.HasPrefix(got, []byte("Received: ")) || !bytes.HasSuffix(got, msg) {
		t.Errorf("ordinary mail changed on the way:\n%s", got)
	}
	if rest := got[:len(got)-len(msg)]; bytes.Count(rest, []byte("\r\n")) > 4 || bytes.Contains(rest, []byte("\r\n\r\n")) {
		t.Errorf("more than Postfix's Received field was added:\n%s", rest)
	}
	if n := len(w.relay.Messages()); n != 0 {
		t.Errorf("the list relay received %d messages", n)
	}
}

// TestUnixSockets: Postfix reaches the milter and the LMTP endpoint on unix
// sockets (socket_group = "postfix"): a tokenless message is refused, a
// tokened one delivered.
func TestUnixSockets(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, unix: true})
	res := w.submit(author, []string{list}, tokenMessage("", "", ""))
	wantReply(t, "no token", res.Data, 550, "5.7.1", "No posting token found")
	w.issue("unixtoken1", nil)
	if res := w.submit(author, []string{list}, tokenMessage("unixtoken1", "RMTOKEN", "")); res.Data != nil {
		t.Fatalf("Postfix refused the tokened message: %v", res.Data)
	}
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.relay.Recipients(), defaultMembers)
}
