package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
	"github.com/restrictedmail/restrictedmail/store"
)

// taggedBounce is the copies' envelope sender: the bounce address with the
// delivery's tag as its subaddress (VERP).
var taggedBounce = regexp.MustCompile(`^board-bounces\+([a-z2-7]{10})@example\.org$`)

var bounceMembers = []string{"b1@example.net", "b2@example.com", "b3@example.com", "b4@example.net", "b5@example.com"}

// TestBouncesThroughPostfix: a tokened message to a list of five; the
// relay takes every copy. Then, through Postfix (so that transport_maps
// routes the tagged bounce addresses to the endpoint, past the milter): an
// RFC 3464 5.1.1 for one recipient, an Exim-shaped bounce for a second, an
// RFC 3464 delay 4.4.1 for a third — and a DSN with a forged tag, a DSN
// for a stranger, an auto-reply, and a bounce of the report itself, none
// of which may change anything. The journal shows two bounced and one
// delayed; `delivery show` prints them; the report says 3 of 5 and names
// the two. With report = "failures" that report arrives once, and nothing
// before it (the fan-out itself failed nobody); with "summary" a first
// report says 5 of 5 after the fan-out and the follow-up arrives once.
func TestBouncesThroughPostfix(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"failures", "summary"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testBouncesThroughPostfix(t, mode)
		})
	}
}

func testBouncesThroughPostfix(t *testing.T, mode string) {
	w := newWorld(t, worldOpts{milter: true, members: bounceMembers,
		extra: "[reports]\nwindow = \"1s\"\npoll_interval = \"100ms\"\n"})
	_, file := w.issueCLI("--report", mode)
	res := w.submit(author, []string{list}, fileMessage(file))
	if res.Data != nil {
		t.Fatalf("Postfix refused the tokened message: %v (rcpt %v)", res.Data, res.Rcpt)
	}
	w.relay.WaitRecipients(t, len(bounceMembers), waitMail)
	copies := w.relay.Messages()
	m := taggedBounce.FindStringSubmatch(copies[0].From)
	if m == nil {
		t.Fatalf("envelope sender %q is not the tagged bounce address", copies[0].From)
	}
	tagged := copies[0].From
	for _, c := range copies {
		if c.From != tagged {
			t.Errorf("copies of one delivery with envelope senders %q and %q", tagged, c.From)
		}
	}

	db, err := store.Open(context.Background(), w.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Postfix's queue empties at the endpoint's 250, which follows the
	// commit that completed the delivery and made its report due.
	w.pf.WaitQueueEmpty(t, waitMail)
	wantReports := 1
	if mode == "summary" {
		// The first report, once the fan-out completed.
		first := waitReports(t, w.relay, 1)
		if !strings.Contains(first[0], "reached 5 of 5 recipients") {
			t.Errorf("first report:\n%s", first[0])
		}
		wantReports = 2
	} else {
		// The fan-out's report had nothing to say: it is settled unsent.
		waitNoReportsDue(t, db)
		if n := len(reportTexts(w.relay)); n != 0 {
			t.Fatalf("%d reports after a fan-out that failed nobody, with report = \"failures\"", n)
		}
	}

	dsns := []struct {
		to, name string
		msg      []byte
	}{
		{tagged, "rfc3464 5.1.1", rfc3464(tagged, "b1@example.net", "failed", "5.1.1", "smtp; 550 5.1.1 <b1@example.net>: user unknown")},
		{tagged, "exim", eximBounce(tagged, "b2@example.com")},
		{tagged, "rfc3464 delayed 4.4.1", rfc3464(tagged, "b3@example.com", "delayed", "4.4.1", "smtp; 451 4.4.1 no answer")},
		{"board-bounces+aaaaaaaaaa@example.org", "forged tag", rfc3464("board-bounces+aaaaaaaaaa@example.org", "b4@example.net", "failed", "5.1.1", "smtp; 550 5.1.1 gone")},
		{tagged, "stranger", rfc3464(tagged, "stranger@example.com", "failed", "5.1.1", "smtp; 550 5.1.1 gone")},
		{tagged, "auto-reply", autoReply(tagged, "b5@example.com")},
		{bounce, "bounce of the report", rfc3464(bounce, author, "failed", "5.2.2", "smtp; 552 5.2.2 mailbox full")},
	}
	for _, d := range dsns {
		from := ""
		if d.name == "auto-reply" {
			from = "b5@example.com"
		}
		if r := w.submit(from, []string{d.to}, d.msg); r.Data != nil || r.Mail != nil || r.Rcpt[d.to] != nil {
			t.Fatalf("Postfix refused the %s: mail %v rcpt %v data %v", d.name, r.Mail, r.Rcpt, r.Data)
		}
	}
	w.pf.WaitQueueEmpty(t, waitMail)
	w.rm.waitLog("auto-reply to a bounce address dropped", waitMail)
	w.rm.waitLog("no delivery tag: it names no delivery) dropped", waitMail)

	// The follow-up: 3 of 5, naming the two that failed.
	reports := waitReports(t, w.relay, wantReports)
	follow := reports[wantReports-1]
	for _, want := range []string{"reached 3 of 5 recipients", "b1@example.net", "5.1.1", "b2@example.com", "b3@example.com"} {
		if !strings.Contains(follow, want) {
			t.Errorf("follow-up report lacks %q:\n%s", want, follow)
		}
	}
	for _, not := range []string{"b4@example.net", "stranger@example.com", "b5@example.com"} {
		if strings.Contains(follow, not) {
			t.Errorf("follow-up report names %s:\n%s", not, follow)
		}
	}

	ds, err := db.ListDeliveries(context.Background(), store.DeliveryQuery{})
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries %v, %v; want 1", ds, err)
	}
	dd, err := db.DeliveryDetailOf(context.Background(), ds[0].ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if c := dd.Counts; c.Failed != 2 || c.Bounced != 2 || c.Delayed != 1 || c.Delivered != 3 || c.Pending != 0 {
		t.Errorf("counts %+v, want 2 failed (bounced), 1 delayed, 3 delivered", c)
	}
	states := map[string]store.State{}
	for _, r := range dd.Recipients {
		states[r.Rcpt] = r.State
	}
	want := map[string]store.State{"b1@example.net": store.Bounced, "b2@example.com": store.Bounced, "b3@example.com": store.Delayed,
		"b4@example.net": store.Delivered, "b5@example.com": store.Delivered}
	for r, st := range want {
		if states[r] != st {
			t.Errorf("%s is %s, want %s", r, states[r], st)
		}
	}
	// Nothing more is due once the follow-up is recorded as sent: the
	// bounce of the report made no report, and the follow-up was the last.
	waitNoReportsDue(t, db)
	if n := len(reportTexts(w.relay)); n != wantReports {
		t.Errorf("%d reports at the relay, want %d", n, wantReports)
	}

	out, err := exec.Command(binary, "delivery", "show", "--config", w.conf, ds[0].ID).CombinedOutput()
	if err != nil {
		t.Fatalf("delivery show: %v\n%s", err, out)
	}
	for _, re := range []string{`(?m)^b1@example\.net\s+bounced\s+\S+\s+5\.1\.1\s+550 5\.1\.1`, `(?m)^b2@example\.com\s+bounced\s+\S+\s+5\.1\.1`,
		`(?m)^b3@example\.com\s+delayed\s+\S+\s+4\.4\.1`, `reached 3 of 5 recipients`} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("delivery show does not match %s:\n%s", re, out)
		}
	}
	out, err = exec.Command(binary, "delivery", "list", "--config", w.conf, "--list", list).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ds[0].ID) {
		t.Errorf("delivery list: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "recipients", "bouncing", "--config", w.conf, "--list", list, "--min", "1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "b1@example.net") || !strings.Contains(string(out), "b2@example.com") ||
		strings.Contains(string(out), "b3@example.com") {
		t.Errorf("recipients bouncing: %v\n%s", err, out)
	}
}

// waitNoReportsDue waits until the store holds no report due, now or
// later: each was sent or settled with nothing to say.
func waitNoReportsDue(t *testing.T, db *store.DB) {
	t.Helper()
	for deadline := time.Now().Add(waitMail); ; {
		due, err := db.DueReports(context.Background(), time.Now().Add(24*time.Hour), 10)
		if err == nil && len(due) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reports still due: %v, %v", due, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the store's state, bounded by the deadline
	}
}

// reportTexts returns the reports the relay received: null sender, to the
// author.
func reportTexts(s *testsmtp.Server) []string {
	var out []string
	for _, m := range s.Messages() {
		if m.From == "" && len(m.Rcpts) == 1 && m.Rcpts[0] == author {
			out = append(out, decodeQP(string(m.Data)))
		}
	}
	return out
}

// waitReports waits for n reports and returns them.
func waitReports(t *testing.T, s *testsmtp.Server, n int) []string {
	t.Helper()
	deadline := time.Now().Add(waitMail)
	for {
		if rs := reportTexts(s); len(rs) >= n {
			for _, r := range rs {
				if !strings.Contains(r, "Auto-Submitted: auto-generated") || !strings.Contains(r, "DKIM-Signature:") ||
					!strings.Contains(r, "From: \"Example Board\" <"+bounce+">") {
					t.Errorf("report is not an auto-generated, signed mail from the bounce address:\n%s", r)
				}
			}
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reports at the relay after %s, want %d", len(reportTexts(s)), waitMail, n)
		}
		s.WaitRecipients(t, len(s.Recipients())+1, time.Until(deadline))
	}
}

// decodeQP undoes quoted-printable soft breaks and =XX escapes well enough
// to read a report's text.
func decodeQP(s string) string {
	s = strings.ReplaceAll(s, "=\r\n", "")
	return regexp.MustCompile(`=([0-9A-F]{2})`).ReplaceAllStringFunc(s, func(m string) string {
		var b byte
		fmt.Sscanf(m[1:], "%02X", &b)
		return string([]byte{b})
	})
}

func rfc3464(to, rcpt, action, status, diag string) []byte {
	return []byte(strings.ReplaceAll(`From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: `+to+`
Subject: Undelivered Mail Returned to Sender
Date: Fri, 04 Dec 2026 10:00:00 +0000
Message-ID: <`+fmt.Sprint(time.Now().UnixNano())+`@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="R"

--R
Content-Type: text/plain

A message could not be delivered.

--R
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; `+rcpt+`
Action: `+action+`
Status: `+status+`
Diagnostic-Code: `+diag+`

--R--
`, "\n", "\r\n"))
}

func eximBounce(to, rcpt string) []byte {
	return []byte(strings.ReplaceAll(`From: Mail Delivery System <Mailer-Daemon@mx.example.com>
To: `+to+`
Subject: Mail delivery failed: returning message to sender
Date: Fri, 04 Dec 2026 10:00:00 +0000
Message-ID: <exim-`+fmt.Sprint(time.Now().UnixNano())+`@mx.example.com>
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  `+rcpt+`
    host mx.example.com [192.0.2.7]
    SMTP error from remote mail server after RCPT TO:<`+rcpt+`>:
    550 5.1.1 <`+rcpt+`>: Recipient address rejected: User unknown
`, "\n", "\r\n"))
}

func autoReply(to, from string) []byte {
	return []byte(strings.ReplaceAll(`From: `+from+`
To: `+to+`
Subject: Out of office: Minutes
Date: Fri, 04 Dec 2026 10:00:00 +0000
Message-ID: <ooo-`+fmt.Sprint(time.Now().UnixNano())+`@example.com>
Auto-Submitted: auto-replied

I am away until Monday; your message could not be read.
`, "\n", "\r\n"))
}

// TestReportSurvivesKill9: a report due when the daemon is killed with
// SIGKILL is sent once after it starts again. The worker looks for due
// reports at start and then only every hour here, so the report is still
// due, as a row in the store, when the daemon dies.
func TestReportSurvivesKill9(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, extra: "[reports]\npoll_interval = \"1h\"\n"})
	_, file := w.issueCLI("--report", "summary")
	if res := w.submit(author, []string{list}, fileMessage(file)); res.Data != nil {
		t.Fatalf("Postfix refused the tokened message: %v", res.Data)
	}
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail) // the 250: the delivery, and its report due, are committed
	if n := len(reportTexts(w.relay)); n != 0 {
		t.Fatalf("%d reports before the restart; the worker should not have looked yet", n)
	}
	p := w.rm
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("restrictedmail did not die of SIGKILL")
	}
	p.once.Do(func() {}) // its cleanup must not expect a clean exit
	w.rm = startDaemon(t, w.conf)
	reports := waitReports(t, w.relay, 1)
	if !strings.Contains(reports[0], "reached 3 of 3 recipients") {
		t.Errorf("report:\n%s", reports[0])
	}
	w.rm.waitLog("report sent", waitMail)
	if n := len(reportTexts(w.relay)); n != 1 {
		t.Errorf("%d reports, want 1", n)
	}
}
