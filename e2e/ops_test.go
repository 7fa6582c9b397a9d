package e2e

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/dryrun"
	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/internal/promtext"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// httpWorld is a world with the [http] endpoint on a free loopback port;
// it returns the world and the endpoint's base URL.
func httpWorld(t *testing.T, o worldOpts) (*world, string) {
	t.Helper()
	port := freePort(t)
	o.extra += "[http]\nlisten = \"inet:127.0.0.1:" + port + "\"\n"
	return newWorld(t, o), "http://127.0.0.1:" + port
}

func scrape(t *testing.T, base string) promtext.Samples {
	t.Helper()
	s, err := promtext.Fetch(base + "/metrics")
	if err != nil {
		t.Fatalf("scraping: %v", err)
	}
	return s
}

type metricDelta struct {
	delta  float64
	name   string
	labels []string
}

func wantDeltas(t *testing.T, what string, before, after promtext.Samples, deltas []metricDelta) {
	t.Helper()
	for _, d := range deltas {
		if got := after.Get(d.name, d.labels...) - before.Get(d.name, d.labels...); got != d.delta {
			t.Errorf("%s: %s changed by %v, want %v", what, promtext.Key(d.name, d.labels...), got, d.delta)
		}
	}
}

// TestMetricsThroughPostfix: every metric moves as it should after real
// milter verdicts (an ordinary message, a tokenless one, a tokened one)
// and a real delivery through Postfix whose relay refuses one member for
// good and another once, scraped over HTTP between the hand-overs.
func TestMetricsThroughPostfix(t *testing.T) {
	t.Parallel()
	var refusedOnce atomic.Bool
	w, base := httpWorld(t, worldOpts{milter: true})
	w.relay.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		switch {
		case rcpt == "m3@example.com":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case rcpt == "m2@example.com" && refusedOnce.CompareAndSwap(false, true):
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	})
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, base+p); code != 200 {
			t.Errorf("%s: %d %q", p, code, body)
		}
	}
	before := scrape(t, base)

	res := w.submit(author, []string{"someone@example.org"}, tokenMessage("", "", ""))
	if res.Data != nil {
		t.Fatalf("ordinary mail refused: %v", res.Data)
	}
	res = w.submit(author, []string{list}, tokenMessage("", "", ""))
	wantReply(t, "tokenless", res.Data, 550, "5.7.1", "No posting token found")
	tok, file := w.issueCLI() // another process: counted from the store
	if res := w.submit(author, []string{list}, fileMessage(file)); res.Data != nil {
		t.Fatalf("tokened message refused: %v", res.Data)
	}
	// First hand-over: m1 delivered, m2 deferred, m3 failed; Postfix keeps
	// the message for m2.
	// Wait for the deferred queue, not just the delay reason: a flush while
	// qmgr still holds the message in the active queue is skipped ("still
	// being delivered"), and the test Postfix retries only on a flush.
	w.pf.WaitQueue(t, waitMail, func(q []postfixtest.QueueEntry) bool {
		return len(q) == 1 && q[0].QueueName == "deferred" && strings.Contains(q[0].Recipients[0].DelayReason, "4.4.1")
	})
	mid := scrape(t, base)
	if lines := w.rm.log.lines(`msg="delivery deferred"`, "result=451", "pending=1"); len(lines) != 1 {
		t.Errorf("want one deferred-delivery log line, got %q", lines)
	}
	wantDeltas(t, "after the first hand-over", before, mid, []metricDelta{
		{1, "restrictedmail_milter_verdicts_total", []string{"reason", "ordinary"}},
		{1, "restrictedmail_milter_verdicts_total", []string{"reason", "no_token"}},
		{1, "restrictedmail_milter_verdicts_total", []string{"reason", "pass"}},
		{1, "restrictedmail_milter_token_check_duration_seconds_count", nil},
		{0, "restrictedmail_lmtp_deliveries_total", []string{"outcome", "delivered"}},
		{1, "restrictedmail_lmtp_deliveries_total", []string{"outcome", "deferred"}},
		{0, "restrictedmail_lmtp_deliveries_total", []string{"outcome", "refused"}},
		{1, "restrictedmail_lmtp_delivery_duration_seconds_count", nil},
		{1, "restrictedmail_recipients_total", []string{"outcome", "delivered"}},
		{1, "restrictedmail_recipients_total", []string{"outcome", "failed"}},
		{1, "restrictedmail_recipients_total", []string{"outcome", "deferred"}},
		{1, "restrictedmail_recipients_pending", nil},
		{1, "restrictedmail_deliveries_pending", nil},
		{1, "restrictedmail_relay_connections_total", []string{"result", "ok"}},
		{1, "restrictedmail_relay_transactions_total", []string{"result", "delivered"}},
		{1, "restrictedmail_relay_transaction_duration_seconds_count", nil},
		{1, "restrictedmail_relay_errors_total", []string{"class", "permanent", "stage", "rcpt"}},
		{1, "restrictedmail_relay_errors_total", []string{"class", "temporary", "stage", "rcpt"}},
		{1, "restrictedmail_tokens_issued_total", []string{"list", list}},
		{1, "restrictedmail_tokens_spent_total", []string{"list", list}},
		{0, "restrictedmail_tokens_active", []string{"list", list}},
	})

	// Second hand-over: m2 is delivered and the delivery completes.
	w.pf.Flush(t)
	w.relay.WaitRecipients(t, 2, waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	after := scrape(t, base)
	wantDeltas(t, "after the second hand-over", mid, after, []metricDelta{
		{0, "restrictedmail_milter_verdicts_total", []string{"reason", "pass"}},
		{1, "restrictedmail_lmtp_deliveries_total", []string{"outcome", "delivered"}},
		{0, "restrictedmail_lmtp_deliveries_total", []string{"outcome", "deferred"}},
		{1, "restrictedmail_lmtp_delivery_duration_seconds_count", nil},
		{1, "restrictedmail_recipients_total", []string{"outcome", "delivered"}},
		{0, "restrictedmail_recipients_total", []string{"outcome", "failed"}},
		{0, "restrictedmail_recipients_total", []string{"outcome", "deferred"}},
		{-1, "restrictedmail_recipients_pending", nil},
		{-1, "restrictedmail_deliveries_pending", nil},
		{1, "restrictedmail_relay_transactions_total", []string{"result", "delivered"}},
		{0, "restrictedmail_relay_errors_total", []string{"class", "permanent", "stage", "rcpt"}},
		{0, "restrictedmail_tokens_spent_total", []string{"list", list}},
	})
	if after.Get("restrictedmail_store_up") != 1 {
		t.Errorf("restrictedmail_store_up = %v", after.Get("restrictedmail_store_up"))
	}
	exactlyOnce(t, w.relay.Recipients(), []string{"m1@example.net", "m2@example.com"})
	if strings.Contains(w.rm.log.String(), tok) {
		t.Errorf("the token appears in the log")
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// tokenByValue returns the store's record of the token tok.
func (w *world) tokenByValue(tok string) token.Record {
	w.t.Helper()
	db, err := store.Open(context.Background(), w.db)
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	rec, err := db.TokenByHash(context.Background(), token.HashOf(tok))
	if err != nil {
		w.t.Fatal(err)
	}
	return rec
}

// lmtpAddr reads the LMTP endpoint's address from the world's configuration.
func (w *world) lmtpAddr() string {
	w.t.Helper()
	cfg, problems := config.Load(w.conf)
	if cfg == nil {
		w.t.Fatal(problems.Error())
	}
	return cfg.LMTP.Addr.Address
}

// lmtpSend hands msg straight to the daemon's LMTP endpoint, as Postfix's
// lmtp client would, and returns the recipient's reply (nil: 250).
func lmtpSend(t *testing.T, addr, from string, rcpts []string, msg []byte) error {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := wc.Write(msg); err != nil {
		return err
	}
	_, err = wc.CloseWithLMTPResponse()
	var le smtp.LMTPDataError
	if errors.As(err, &le) {
		for _, se := range le {
			return se
		}
	}
	return err
}

var (
	dkimTime = regexp.MustCompile(`\bt=\d+;`)
	dkimSig  = regexp.MustCompile(`\bb=[A-Za-z0-9+/=\r\n\t ]*`)
)

// splitSignature separates the DKIM-Signature field in front of a copy
// from the rest, with its timestamp and signature blanked.
func splitSignature(t *testing.T, copy []byte) (sig string, rest []byte) {
	t.Helper()
	if !bytes.HasPrefix(copy, []byte("DKIM-Signature: ")) {
		t.Fatalf("the copy does not start with its DKIM-Signature:\n%s", copy)
	}
	end := 0
	for {
		i := bytes.Index(copy[end:], []byte("\r\n"))
		if i < 0 {
			t.Fatalf("unterminated DKIM-Signature")
		}
		end += i + 2
		if end >= len(copy) || (copy[end] != ' ' && copy[end] != '\t') {
			break
		}
	}
	sig = dkimSig.ReplaceAllString(dkimTime.ReplaceAllString(string(copy[:end]), "t=;"), "b=")
	return sig, copy[end:]
}

// TestDryRunPrintsTheCopyServeSends: `restrictedmail test` prints, byte for
// byte (DKIM timestamp and signature aside), the copy that `serve` then
// sends for the same message handed straight to its LMTP endpoint — and
// the dry run spends nothing.
func TestDryRunPrintsTheCopyServeSends(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	tok, _ := w.issueCLI()
	// A Date and a Message-ID, so that nothing depends on when the copy is
	// made; a token header and a body with a token part's worth of detail.
	msg := []byte("From: Alice Author <" + author + ">\r\nTo: Example Board <" + list + ">\r\nCc: someone@example.org\r\n" +
		"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from the dry run\r\nMessage-ID: <dryrun-1@example.net>\r\n" +
		"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nX-Restricted-Token: " + tok + "\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHello board,\r\n\r\nthe minutes follow. Gr\xc3\xbc\xc3\x9fe\r\n")
	file := filepath.Join(w.dir, "message.eml")
	if err := os.WriteFile(file, msg, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "test", "--config", w.conf, "--from", author, "--to", list, file).CombinedOutput()
	if err != nil {
		t.Fatalf("restrictedmail test: %v\n%s", err, out)
	}
	for _, want := range []string{"milter:   accepted", "lmtp <" + list + ">: 250 2.0.0 OK", "  recipients (3):\n    m1@example.net\n    m2@example.com\n    m3@example.com\n"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	begin, end := bytes.Index(out, []byte(dryrun.BeginCopy)), bytes.Index(out, []byte(dryrun.EndCopy))
	if begin < 0 || end < begin {
		t.Fatalf("no copy in the output:\n%s", out)
	}
	preview := out[begin+len(dryrun.BeginCopy) : end]
	if rec := w.tokenByValue(tok); rec.UsesSpent != 0 {
		t.Fatalf("the dry run spent the token")
	}
	if len(w.relay.Messages()) != 0 {
		t.Fatalf("the dry run sent something")
	}

	if err := lmtpSend(t, w.lmtpAddr(), author, []string{list}, msg); err != nil {
		t.Fatalf("LMTP: %v", err)
	}
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	sent := w.relay.Messages()[0].Data
	gotSig, gotRest := splitSignature(t, sent)
	wantSig, wantRest := splitSignature(t, preview)
	if gotSig != wantSig {
		t.Errorf("DKIM-Signature differs beyond t= and b=:\n sent    %q\n preview %q", gotSig, wantSig)
	}
	if !bytes.Equal(gotRest, wantRest) {
		t.Errorf("the copy sent differs from the dry run's:\n--- sent\n%s\n--- preview\n%s", gotRest, wantRest)
	}
	dkimtest.VerifyGo(t, preview, w.key)
	if rec := w.tokenByValue(tok); rec.UsesSpent != 1 {
		t.Errorf("serve spent the token %d times, want 1", rec.UsesSpent)
	}
}
