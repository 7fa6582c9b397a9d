package e2e

import (
	"bytes"
	"context"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/restrictedmail/restrictedmail/internal/browsertest"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

const secretary = "secretary@example.org"

// TestWebPageFlow drives the web page for list owners in a real browser
// through the whole flow: sign-in link by mail, issue a token for three
// pasted recipients, download its file, send it through a real Postfix,
// follow the delivery, revoke another token, sign out.
func TestWebPageFlow(t *testing.T) {
	browsertest.Require(t)
	port := freePort(t)
	base := "http://127.0.0.1:" + port
	w := newWorld(t, worldOpts{milter: true, extra: "[api]\nlisten = \"inet:127.0.0.1:" + port + "\"\n" +
		"[web]\nenabled = true\nbase_url = \"" + base + "/\"\nadmins = [\"" + secretary + "\"]\n"})
	ctx := browsertest.Start(t)
	shots := browsertest.Screenshots(t)
	n := 0
	shot := func(name string) {
		t.Helper()
		n++
		browsertest.Shot(t, ctx, shots, fmtShot(n, name))
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		browsertest.Do(t, ctx, what, steps...)
	}
	text := func(sel string) string { t.Helper(); return browsertest.Text(t, ctx, sel) }

	// 1. Ask for a sign-in link.
	do("the sign-in page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#email")))
	shot("signin")
	// By keyboard alone: the first Tab reaches the skip link, Enter in
	// the field sends the form.
	do("tabbing", chromedp.KeyEvent("\t"))
	if cls, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.activeElement.className")); err != nil || cls != "skip" {
		t.Errorf("the first Tab focuses %q (%v), want the skip link", cls, err)
	}
	do("asking for a link", chromedp.SendKeys(chromedp.CSS("#email"), secretary+"\r"), chromedp.WaitVisible(chromedp.CSS("p.message")))
	if got := text("p.message"); !strings.Contains(got, "sign-in link is on its way") {
		t.Fatalf("after asking for a link: %q", got)
	}
	shot("link-sent")

	// 2. Read it from the capture relay: signed, automatic, the link inside.
	w.relay.WaitRecipients(t, 1, 30*time.Second)
	signIn := w.relay.Messages()[0]
	if signIn.From != bounce || len(signIn.Rcpts) != 1 || signIn.Rcpts[0] != secretary {
		t.Fatalf("sign-in mail envelope %s → %v", signIn.From, signIn.Rcpts)
	}
	if d := dkimtest.VerifyGo(t, signIn.Data, w.key); len(d) != 1 || d[0] != "example.org" {
		t.Errorf("sign-in mail DKIM: %v", d)
	}
	link := linkIn(t, signIn)

	// 3. Open it.
	do("opening the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#continue")))
	shot("link")
	do("signing in", chromedp.Click(chromedp.CSS("#continue")), chromedp.WaitVisible(chromedp.CSS(".cards")))
	shot("overview")

	// 4. Issue a token for three pasted recipients.
	rcpts := []string{"r1@example.net", "r2@example.com", "r3@example.com"}
	do("the issue form", chromedp.Navigate(base+"/lists/"+list+"/issue"), chromedp.WaitVisible(chromedp.CSS("#recipients")))
	// A mistake first: each wrong line is named, what was typed is kept.
	do("a form with mistakes", chromedp.SendKeys(chromedp.CSS("#sender"), author), chromedp.Click(chromedp.CSS("#mode-pasted")),
		chromedp.SendKeys(chromedp.CSS("#recipients"), "r1@example.net\nr2 at example.com"), chromedp.SetValue(chromedp.CSS("#uses"), "0"),
		chromedp.Click(chromedp.CSS("#submit")), chromedp.WaitVisible(chromedp.CSS("p.error[role=alert]")))
	if got := text("#rcpt-err"); !strings.Contains(got, `Line 2: "r2 at example.com"`) {
		t.Errorf("line errors: %q", got)
	}
	shot("issue-mistakes")
	do("filling the form", chromedp.Clear(chromedp.CSS("#recipients")), chromedp.SetValue(chromedp.CSS("#uses"), ""),
		chromedp.SendKeys(chromedp.CSS("#uses"), "1"),
		chromedp.SendKeys(chromedp.CSS("#recipients"), strings.Join(rcpts, "\n")), chromedp.SetValue(chromedp.CSS("#report"), "none"))
	// The corrected fields lose their marks as they are edited (fields.js).
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int]("document.querySelectorAll('[aria-invalid=true]').length")); err != nil || n != 0 {
		t.Errorf("%d fields still marked wrong after correcting them (%v)", n, err)
	}
	if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("document.getElementById('uses-err').hidden && document.getElementById('rcpt-err').hidden")); err != nil || !hidden {
		t.Errorf("the corrected fields' messages are still shown (%v)", err)
	}
	shot("issue")
	do("issuing", chromedp.Click(chromedp.CSS("#submit")), chromedp.WaitVisible(chromedp.CSS("#token")))
	// The page's one script ran under its Content-Security-Policy: a copy
	// button beside the token, the header field and the address.
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int]("document.querySelectorAll('button.copy').length")); err != nil || n != 3 {
		t.Errorf("%d copy buttons (%v), want 3", n, err)
	}
	shot("issued")
	tok := text("#token")
	id := strings.TrimPrefix(mustLocation(t, ctx, "#view"), "/tokens/")
	if !regexp.MustCompile(`^[a-z0-9]{20,}$`).MatchString(tok) {
		t.Fatalf("token on the page: %q", tok)
	}

	// 5. Download the token file.
	dl := t.TempDir()
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	do("downloading the token file", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dl, EventsEnabled: new(true),
		})
		return err
	}), chromedp.Click(chromedp.CSS("#download")))
	var file []byte
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("the download was cancelled")
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			if file, err = os.ReadFile(filepath.Join(dl, ev.GUID)); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if string(file) != "RMTOKEN"+tok+"\n" {
		t.Fatalf("token file %q", file)
	}

	// 6. The sender attaches it to a mail through the real Postfix; the
	// copies reach the three.
	if res := w.submit(author, []string{list}, fileMessage(file)); res.Data != nil {
		t.Fatalf("submitting: %v", res.Data)
	}
	w.pf.Flush(t)
	w.relay.WaitRecipients(t, 1+len(rcpts), 60*time.Second)
	var copies []string
	for _, m := range w.relay.Messages()[1:] {
		copies = append(copies, m.Rcpts...)
	}
	exactlyOnce(t, copies, rcpts)

	// 7. The token's page shows it used and the delivery complete, once
	// the endpoint has logged the delivery settled.
	waitLogLine(t, w.rm, 30*time.Second, "msg=delivery ", "token_id="+id, "complete=true")
	do("the token page", chromedp.Navigate(base+"/tokens/"+id), chromedp.WaitVisible(chromedp.CSS("#state")))
	body := text("main")
	if !strings.Contains(body, "complete") || !strings.Contains(body, "3 delivered, 0 failed, 0 pending") || text("#state") != "used" {
		t.Fatalf("the token page does not show the token used and the delivery complete:\n%s", body)
	}
	for _, r := range rcpts {
		if !strings.Contains(body, r) {
			t.Errorf("the token page does not list %s", r)
		}
	}
	if strings.Contains(body, tok) {
		t.Error("the token page shows the secret")
	}
	if got := text("#report"); got != "none" {
		t.Errorf("the report chosen on the form: the token page says %q", got)
	}
	shot("token-used")
	do("the token page in Norwegian", chromedp.Navigate(base+"/tokens/"+id+"?lang=nb"), chromedp.WaitVisible(chromedp.CSS("#state")))
	if got := text("#state"); got != "brukt" {
		t.Errorf("state in Bokmål: %q", got)
	}
	shot("token-used-nb")
	do("back to English", chromedp.Navigate(base+"/tokens/"+id+"?lang=en"), chromedp.WaitVisible(chromedp.CSS("#state")))

	// 8. Revoke another token, with the confirmation step.
	do("a second token", chromedp.Navigate(base+"/lists/"+list+"/issue"), chromedp.WaitVisible(chromedp.CSS("#mode-list")),
		chromedp.Click(chromedp.CSS("#mode-list")), chromedp.Click(chromedp.CSS("#submit")), chromedp.WaitVisible(chromedp.CSS("#view")),
		chromedp.Click(chromedp.CSS("#view")), chromedp.WaitVisible(chromedp.CSS("#revoke")), chromedp.Click(chromedp.CSS("#revoke")),
		chromedp.WaitVisible(chromedp.CSS("#confirm")))
	shot("revoke-confirm")
	do("revoking", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("p.notice")))
	if got := text("#state"); got != "revoked" {
		t.Fatalf("state after revoking: %q", got)
	}
	shot("revoked")
	do("the list's tokens", chromedp.Navigate(base+"/lists/"+list+"/"), chromedp.WaitVisible(chromedp.CSS("table")))
	shot("tokens")
	do("the overview on a phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/lists/"+list+"/issue"),
		chromedp.WaitVisible(chromedp.CSS("#recipients")))
	shot("issue-phone")
	do("back to a desktop", chromedp.EmulateViewport(1100, 900))

	// 9. Sign out: the session is gone.
	do("signing out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#signout")), chromedp.Click(chromedp.CSS("#signout")),
		chromedp.WaitVisible(chromedp.CSS("#email")))
	shot("signed-out")
	do("the overview again", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#email")))
	if logs := w.rm.log.String(); strings.Contains(logs, tok) || strings.Contains(logs, strings.TrimPrefix(link, base+"/signin/link?t=")) {
		t.Error("the daemon's log holds a secret")
	}
	t.Logf("screenshots in %s", shots)
}

// waitLogLine waits until one line of the daemon's log holds all of subs.
func waitLogLine(t *testing.T, p *daemonProc, timeout time.Duration, subs ...string) {
	t.Helper()
	b := p.log
	deadline := time.Now().Add(timeout)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cond == nil {
		b.cond = sync.NewCond(&b.mu)
	}
	stop := time.AfterFunc(timeout, func() { b.mu.Lock(); b.cond.Broadcast(); b.mu.Unlock() })
	defer stop.Stop()
	for !hasLine(b.buf.String(), subs) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %s", subs, timeout)
		}
		b.cond.Wait()
	}
}

func hasLine(log string, subs []string) bool {
next:
	for _, line := range strings.Split(log, "\n") {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		return true
	}
	return false
}

func fmtShot(n int, name string) string {
	return string(rune('0'+n/10)) + string(rune('0'+n%10)) + "-" + name
}

// linkIn returns the sign-in link in a captured mail.
func linkIn(t *testing.T, m testsmtp.Message) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Auto-Submitted") != "auto-generated" || msg.Header.Get("Message-Id") == "" || msg.Header.Get("Date") == "" {
		t.Errorf("sign-in mail header %v", msg.Header)
	}
	r := msg.Body
	if msg.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
		r = quotedprintable.NewReader(r)
	}
	body, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`http://\S+/signin/link\?t=[A-Za-z0-9_-]+`).FindString(string(body))
	if link == "" {
		t.Fatalf("no link in the sign-in mail:\n%s", body)
	}
	return link
}

// mustLocation returns the href of the link sel.
func mustLocation(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), "href"))
	if err != nil || !v.Exists {
		t.Fatalf("no href on %s: %v", sel, err)
	}
	return v.Value
}
