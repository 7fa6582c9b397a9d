package api_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/apitest"
)

// TestDeliveriesShowBounces: the deliveries resource shows a recipient
// that bounced after the relay took its copy ("bounced", with the report's
// status and diagnostic) and one that is delayed, in the documented shape
// (apitest validates every exchange against openapi.yaml); the token's
// report setting is issued and shown.
func TestDeliveriesShowBounces(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	c := e.client(e.fullKey())
	rcpts := []string{"x1@example.net", "x2@example.com", "x3@example.com"}
	tok := issue(t, c, events, map[string]any{"recipients": rcpts, "report": "failures"})
	r := c.Do(t, apitest.Request{Method: "GET", Path: "/tokens/" + tok.ID})
	if !strings.Contains(string(r.Body), `"report":"failures"`) {
		t.Errorf("token without its report setting: %s", r.Body)
	}
	msg := []byte(strings.ReplaceAll(string(message("RMTOKEN", tok.Token, "bounces")), board, events))
	if err := e.lmtp(events, msg); err != nil {
		t.Fatalf("delivery: %v", err)
	}
	e.relay.WaitRecipients(t, len(rcpts), 30*time.Second)
	tagged := e.relay.Messages()[0].From
	if !strings.HasPrefix(tagged, "events-bounces+") {
		t.Fatalf("envelope sender %q", tagged)
	}
	dsn := func(rcpt, action, status string) string {
		return "From: MAILER-DAEMON@mx.example.net\r\nTo: " + tagged + "\r\nSubject: report\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n--R\r\nContent-Type: text/plain\r\n\r\nx\r\n" +
			"--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; " + rcpt +
			"\r\nAction: " + action + "\r\nStatus: " + status + "\r\nDiagnostic-Code: smtp; 550 " + status + " no such user\r\n\r\n--R--\r\n"
	}
	sendLMTP(t, e, tagged, dsn("x1@example.net", "failed", "5.1.1"))
	sendLMTP(t, e, tagged, dsn("x2@example.com", "delayed", "4.4.1"))

	r = c.Do(t, apitest.Request{Method: "GET", Path: "/tokens/" + tok.ID + "/deliveries"})
	var ds struct {
		Entries []struct {
			Counts struct {
				Delivered, Failed, Pending, Bounced, Delayed int
			} `json:"counts"`
			Recipients []struct {
				Address          string `json:"address"`
				State            string `json:"state"`
				BounceStatus     string `json:"bounce_status"`
				BounceDiagnostic string `json:"bounce_diagnostic"`
			} `json:"recipients"`
		} `json:"entries"`
	}
	r.JSON(t, &ds)
	if len(ds.Entries) != 1 {
		t.Fatalf("deliveries: %s", r.Body)
	}
	d := ds.Entries[0]
	if d.Counts.Delivered != 2 || d.Counts.Failed != 1 || d.Counts.Bounced != 1 || d.Counts.Delayed != 1 {
		t.Errorf("counts: %s", r.Body)
	}
	got := map[string]string{}
	for _, rc := range d.Recipients {
		got[rc.Address] = rc.State + " " + rc.BounceStatus
		if rc.State == "bounced" && !strings.Contains(rc.BounceDiagnostic, "no such user") {
			t.Errorf("bounced without its diagnostic: %+v", rc)
		}
	}
	for a, want := range map[string]string{"x1@example.net": "bounced 5.1.1", "x2@example.com": "delayed 4.4.1", "x3@example.com": "delivered "} {
		if got[a] != want {
			t.Errorf("%s: %q, want %q", a, got[a], want)
		}
	}
}

// sendLMTP hands a message from the null sender to rcpt over LMTP and
// fails unless it is accepted.
func sendLMTP(t *testing.T, e *env, rcpt, msg string) {
	t.Helper()
	conn, err := net.Dial("tcp", e.d.LMTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		t.Fatalf("RCPT %s: %v", rcpt, err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		t.Fatalf("DATA: %v", err)
	}
}
