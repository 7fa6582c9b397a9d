package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/token"
)

const waitMail = 30 * time.Second

// copyParts splits a captured copy into its header fields and body.
func copyParts(t *testing.T, data []byte) (get func(string) []string, body []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(data))
	h, err := mailheader.Read(br)
	if err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	rest.ReadFrom(br)
	return func(k string) []string { return h.Values(k) }, rest.Bytes()
}

func legoFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../token/testdata/lego/" + name)
	if err != nil {
		t.Fatal(err)
	}
	// Submitted over SMTP, a message has CRLF line endings.
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// TestLEGOValidThroughPostfix: LEGO's own valid.eml, submitted to Postfix
// for board@example.org, passes the milter, reaches every member exactly
// once, rewritten as SPEC.md says, without the token, DKIM-signed.
func TestLEGOValidThroughPostfix(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, prefix: "LEGOTOKEN"})
	id := w.issue("test_token", nil)
	msg := bytes.ReplaceAll(legoFixture(t, "valid.eml"), []byte("restricted@abakus.no"), []byte(list))
	msg = bytes.Replace(msg, []byte("From: Eirik <eirik@sylliaas.no>"), []byte("From: Eirik <"+author+">"), 1)

	res := w.submit(author, []string{list}, msg)
	if res.Data != nil {
		t.Fatalf("Postfix refused the tokened message: %v (rcpt %v)", res.Data, res.Rcpt)
	}
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.relay.Recipients(), defaultMembers)

	msgs := w.relay.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d transactions at the relay, want 1 (3 recipients fit one)", len(msgs))
	}
	m := msgs[0]
	if !taggedBounce.MatchString(m.From) {
		t.Errorf("envelope sender %q, want %s with the delivery's tag", m.From, bounce)
	}
	get, body := copyParts(t, m.Data)
	for k, want := range map[string]string{
		"From":      `"Eirik via Example Board" <board@example.org>`,
		"Reply-To":  `"Eirik" <alice@example.net>`,
		"List-Id":   `"Example Board" <board.example.org>`,
		"List-Post": "NO",
		"X-Loop":    list,
	} {
		if got := get(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"Received", "Return-Path", "Delivered-To", "X-Original-To"} {
		if got := get(k); len(got) != 0 {
			t.Errorf("%s is still in the copy: %q", k, got)
		}
	}
	if bytes.Contains(bytes.ToLower(m.Data), []byte("test_token")) || bytes.Contains(m.Data, []byte("TEVHT1RPS0VO")) {
		t.Errorf("the token is in the copy")
	}
	// Body: the original's parts byte for byte, minus the token part.
	orig := string(msg[strings.Index(string(msg), "\r\n\r\n")+4:])
	start := strings.LastIndex(orig, "--001a1141b90e89018f054eb72091\r\nContent-Type: text/plain; charset=US-ASCII")
	end := strings.LastIndex(orig, "--001a1141b90e89018f054eb72091--")
	if want := orig[:start] + orig[end:]; string(body) != want {
		t.Errorf("body is not the original minus the token part:\n got %q\nwant %q", body, want)
	}
	if got := dkimtest.VerifyGo(t, m.Data, w.key); len(got) != 1 || got[0] != "example.org" {
		t.Errorf("go-msgauth passed %v", got)
	}
	dkimtest.VerifyPython(t, m.Data, w.key)
	if rec := w.tokenRecord(id); rec.UsesSpent != 1 {
		t.Errorf("token spent %d times, want 1", rec.UsesSpent)
	}
	w.rm.stop() // the daemon's stderr reaches the log asynchronously: complete once it has exited
	if lines := w.rm.log.lines("msg=delivery", "result=250", "delivered=3"); len(lines) != 1 {
		t.Errorf("want one delivery log line with 3 delivered, got %q", lines)
	}
	if strings.Contains(w.rm.log.String(), "test_token") {
		t.Errorf("the token appears in restrictedmail's log")
	}
}

// TestBadTokenAtLMTPBouncesToSender: without the milter, a message with no
// or a bad token is queued by Postfix, refused by the LMTP endpoint with
// 550 5.7.1, and Postfix sends the sender a DSN; the relay gets nothing.
func TestBadTokenAtLMTPBouncesToSender(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{})
	for _, c := range []struct{ name, tok, sentence string }{
		{"none", "", "No posting token found"},
		{"unknown", "nosuchtoken123", "Unknown posting token"},
	} {
		msg := tokenMessage(c.tok, "RMTOKEN", "Subject: "+c.name+"\r\n")
		if res := w.submit(author, []string{list}, msg); res.Data != nil {
			t.Fatalf("%s: Postfix refused: %v", c.name, res.Data)
		}
	}
	w.sink.WaitRecipients(t, 2, waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	for _, m := range w.sink.Messages() {
		if len(m.Rcpts) != 1 || m.Rcpts[0] != author || m.From != "" {
			t.Errorf("DSN envelope %q → %v, want <> → %s", m.From, m.Rcpts, author)
		}
		if !bytes.Contains(m.Data, []byte("5.7.1")) || !bytes.Contains(m.Data, []byte("board@example.org")) {
			t.Errorf("DSN does not carry the 5.7.1 reason:\n%s", m.Data)
		}
	}
	dsns := string(w.sink.Messages()[0].Data) + string(w.sink.Messages()[1].Data)
	for _, s := range []string{"No posting token found", "Unknown posting token"} {
		if !strings.Contains(strings.ReplaceAll(dsns, "\r\n ", " "), s) {
			t.Errorf("no DSN says %q", s)
		}
	}
	if n := len(w.relay.Messages()); n != 0 {
		t.Errorf("the relay received %d messages", n)
	}
}

// TestRelayDownThenBack: while the relay refuses connections the message
// waits in Postfix's deferred queue with our 451 reason; once the relay is
// back and the queue flushed, every member gets it exactly once.
func TestRelayDownThenBack(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{})
	tok, file := w.issueCLI()
	w.relay.Refuse()
	if res := w.submit(author, []string{list}, fileMessage(file)); res.Data != nil {
		t.Fatalf("Postfix refused: %v", res.Data)
	}
	q := w.pf.WaitQueue(t, waitMail, func(q []postfixtest.QueueEntry) bool {
		return len(q) == 1 && q[0].QueueName == "deferred" && len(q[0].Recipients) == 1 && strings.Contains(q[0].Recipients[0].DelayReason, "4.4.1")
	})
	if r := q[0].Recipients[0].DelayReason; !strings.Contains(r, "pending") {
		t.Errorf("delay reason %q does not explain the wait", r)
	}
	w.relay.Resume()
	w.pf.Flush(t)
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.relay.Recipients(), defaultMembers)
	if strings.Contains(w.rm.log.String(), tok) {
		t.Errorf("the token appears in the log")
	}
}

// TestRelayDropsMidFanOut: a relay that drops the connection after some
// transactions; the next hand-over sends only the rest, the token is spent
// once and nobody gets two copies.
func TestRelayDropsMidFanOut(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{membersFile: 60, maxRecipients: 10, connections: 1})
	id := w.issue("droptoken123", nil)
	w.relay.DropAfter(2)
	if res := w.submit(author, []string{list}, tokenMessage("droptoken123", "RMTOKEN", "")); res.Data != nil {
		t.Fatalf("Postfix refused: %v", res.Data)
	}
	w.pf.WaitQueue(t, waitMail, func(q []postfixtest.QueueEntry) bool {
		return len(q) == 1 && q[0].QueueName == "deferred" && strings.Contains(q[0].Recipients[0].DelayReason, "4.4.1")
	})
	first := len(w.relay.Recipients())
	if first == 0 || first >= 60 {
		t.Fatalf("first hand-over delivered %d of 60; the drop did not split the fan-out", first)
	}
	w.pf.Flush(t)
	w.relay.WaitRecipients(t, 60, waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.relay.Recipients(), w.members())
	if rec := w.tokenRecord(id); rec.UsesSpent != 1 {
		t.Errorf("token spent %d times, want 1", rec.UsesSpent)
	}
	w.rm.stop() // the daemon's stderr reaches the log asynchronously: complete once it has exited
	if lines := w.rm.log.lines("msg=delivery", "resumed=true", "result=250"); len(lines) != 1 {
		t.Errorf("want one resumed delivery, log lines %q", lines)
	}
}

// TestLatin1HeaderToken: a single-part 8-bit Latin-1 message with a header
// token arrives with identical body bytes.
func TestLatin1HeaderToken(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	w.issue("latintoken1", nil)
	body := "Gr\xfc\xdfe aus K\xf6ln! \xc9t\xe9, \xe0 bient\xf4t.\r\n\r\nJ\xfcrgen\r\n"
	msg := []byte("From: =?ISO-8859-1?Q?J=FCrgen?= <" + author + ">\r\nTo: " + list + "\r\nSubject: caf\xe9\r\n" +
		"Message-ID: <latin1@example.net>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nX-Restricted-Token: latintoken1\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body)
	if res := w.submit(author, []string{list}, msg); res.Data != nil {
		t.Fatalf("Postfix refused: %v", res.Data)
	}
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	m := w.relay.Messages()[0]
	get, got := copyParts(t, m.Data)
	if string(got) != body {
		t.Errorf("body changed:\n got %q\nwant %q", got, body)
	}
	if f := get("From"); len(f) != 1 || f[0] != "=?utf-8?q?J=C3=BCrgen_via_Example_Board?= <board@example.org>" {
		t.Errorf("From = %q", f)
	}
	if get("X-Restricted-Token") != nil {
		t.Errorf("the token header is still there")
	}
	dkimtest.VerifyPython(t, m.Data, w.key)
}

// TestStartTLSAuthRelay: STARTTLS + AUTH to a relay with a private CA.
func TestStartTLSAuthRelay(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{
		relay:     testsmtp.Options{TLS: testsmtp.StartTLS, Username: "relay@example.org", Password: "s3cret pass"},
		relayTLS:  "starttls",
		relayAuth: true,
	})
	w.issue("tlstoken1", nil)
	if res := w.submit(author, []string{list}, tokenMessage("tlstoken1", "RMTOKEN", "")); res.Data != nil {
		t.Fatalf("Postfix refused: %v", res.Data)
	}
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	for _, m := range w.relay.Messages() {
		if !m.TLS || m.AuthUser != "relay@example.org" {
			t.Errorf("transaction without TLS or AUTH: tls=%v auth=%q", m.TLS, m.AuthUser)
		}
	}
	if strings.Contains(w.rm.log.String(), "s3cret") {
		t.Errorf("the relay password appears in the log")
	}
}

// TestStartTLSRequiredButMissing: tls = "starttls" against a relay that
// does not offer it is a temporary failure, and no credentials are sent.
func TestStartTLSRequiredButMissing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{
		relay:     testsmtp.Options{TLS: testsmtp.NoTLS, Username: "relay@example.org", Password: "pw", AuthInClear: true},
		relayTLS:  "starttls",
		relayAuth: true,
	})
	w.issue("notlstoken1", nil)
	if res := w.submit(author, []string{list}, tokenMessage("notlstoken1", "RMTOKEN", "")); res.Data != nil {
		t.Fatalf("Postfix refused: %v", res.Data)
	}
	w.pf.WaitQueue(t, waitMail, func(q []postfixtest.QueueEntry) bool {
		return len(q) == 1 && q[0].QueueName == "deferred" && strings.Contains(q[0].Recipients[0].DelayReason, "4.4.1")
	})
	if w.relay.PlaintextAuth() {
		t.Errorf("credentials were offered over a plaintext connection")
	}
	if n := len(w.relay.Messages()); n != 0 {
		t.Errorf("%d messages went through without TLS", n)
	}
}

// TestBackIntoPostfix: the copies go back into Postfix's reinjection
// smtpd (FILTER_README) and Postfix delivers them.
func TestBackIntoPostfix(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, reinject: true})
	w.issue("reinject1", nil)
	if res := w.submit(author, []string{list}, tokenMessage("reinject1", "RMTOKEN", "")); res.Data != nil {
		t.Fatalf("Postfix refused: %v", res.Data)
	}
	w.sink.WaitRecipients(t, len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.sink.Recipients(), defaultMembers)
	for _, m := range w.sink.Messages() {
		if !taggedBounce.MatchString(m.From) {
			t.Errorf("envelope sender %q, want %s with the delivery's tag", m.From, bounce)
		}
		dkimtest.VerifyPython(t, m.Data, w.key)
	}
}

// TestTenThousandRecipients: a 10,000-member list completes through
// Postfix; the test logs the time and the daemon's peak RSS.
func TestTenThousandRecipients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the 10,000-recipient fan-out is a long test")
	}
	t.Parallel()
	w := newWorld(t, worldOpts{membersFile: 10000, relay: testsmtp.Options{DiscardData: true}})
	w.issue("bigtoken1", nil)
	msg := tokenMessage("bigtoken1", "RMTOKEN", "")
	msg = bytes.Replace(msg, []byte("Hello board."), []byte(strings.Repeat("Fifty kilobytes of minutes. ", 1800)), 1)
	start := time.Now()
	if res := w.submit(author, []string{list}, msg); res.Data != nil {
		t.Fatalf("Postfix refused: %v", res.Data)
	}
	w.relay.WaitRecipients(t, 10000, 5*time.Minute)
	elapsed := time.Since(start)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.relay.Recipients(), w.members())
	rss := w.rm.peakRSS()
	t.Logf("10,000 recipients of a %d-byte message: %s (%.0f recipients/s), daemon peak RSS %.1f MiB",
		len(msg), elapsed.Round(time.Millisecond), 10000/elapsed.Seconds(), float64(rss)/(1<<20))
}

// tokenMessage is a two-part message whose second part is a token file
// (base64, as mail clients attach text files); tok "" leaves it out.
func tokenMessage(tok, prefix, extra string) []byte {
	var file []byte
	if tok != "" {
		file = token.FileContent(prefix, tok)
	}
	return fileMessage(file, extra)
}

func fileMessage(file []byte, extra ...string) []byte {
	var b strings.Builder
	b.WriteString("From: Alice <" + author + ">\r\nTo: Example Board <" + list + ">\r\nSubject: Minutes\r\n" +
		"Message-ID: <" + token.NewID() + "@example.net>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" + strings.Join(extra, "") +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello board.\r\n")
	if file != nil {
		b.WriteString("--b1\r\nContent-Type: text/plain; name=\"token.txt\"\r\nContent-Disposition: attachment; filename=\"token.txt\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(file) + "\r\n")
	}
	b.WriteString("--b1--\r\n")
	return []byte(b.String())
}
