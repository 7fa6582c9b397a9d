package web

import (
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/restrictedmail/restrictedmail/internal/browsertest"
)

// TestBouncesInBrowser: the deliveries of a token with a delivered, a
// failed, a bounced, a delayed and a pending recipient, as Chromium
// renders them, on a desktop and on a phone, in English and Bokmål; the
// screenshots are for a person to look at.
func TestBouncesInBrowser(t *testing.T) {
	browsertest.Require(t)
	h := newHarness(t, nil)
	b := h.browser()
	b.signIn(bob)
	id := bouncedDelivery(t, h, b)
	u, _ := url.Parse(h.browser().linkFor(bob))
	ctx := browsertest.Start(t)
	shots := browsertest.Screenshots(t)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		browsertest.Do(t, ctx, what, steps...)
	}
	text := func(sel string) string { t.Helper(); return browsertest.Text(t, ctx, sel) }
	do("signing in", chromedp.Navigate(h.srv.URL+u.RequestURI()), chromedp.WaitVisible(chromedp.CSS("#continue")),
		chromedp.Click(chromedp.CSS("#continue")), chromedp.WaitVisible(chromedp.CSS(".cards")))
	if got := text(".card .badge.bad"); got != "2" {
		t.Errorf("failed recipients on the overview: %q, want 2", got)
	}
	browsertest.Shot(t, ctx, shots, "overview-bounced")
	do("the token page", chromedp.Navigate(h.srv.URL+"/tokens/"+id), chromedp.WaitVisible(chromedp.CSS("table")))
	rows := text("tbody")
	for _, want := range []string{"c@example.net\tbounced\t5.1.1 smtp; 550 5.1.1 <c@example.net>: user unknown",
		"d@example.net\tdelayed\t4.4.1 smtp; 451 4.4.1 connection timed out", "b@example.net\tfailed\t550 5.7.1"} {
		if !strings.Contains(rows, want) {
			t.Errorf("the rendered table lacks %q:\n%s", want, rows)
		}
	}
	browsertest.Shot(t, ctx, shots, "token-bounced")
	do("on a phone", chromedp.EmulateViewport(390, 844), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("table")))
	browsertest.Shot(t, ctx, shots, "token-bounced-phone")
	do("in Bokmål", chromedp.EmulateViewport(1100, 900), chromedp.Navigate(h.srv.URL+"/tokens/"+id+"?lang=nb"), chromedp.WaitVisible(chromedp.CSS("table")))
	browsertest.Shot(t, ctx, shots, "token-bounced-nb")
	do("the issue form", chromedp.Navigate(h.srv.URL+"/lists/"+events+"/issue?lang=en"), chromedp.WaitVisible(chromedp.CSS("#report")),
		chromedp.SendKeys(chromedp.CSS("#sender"), "alice@example.net"), chromedp.SetValue(chromedp.CSS("#uses"), "3"),
		chromedp.SendKeys(chromedp.CSS("#recipients"), "r1@example.net\nr2@example.com\nr3@example.com"),
		chromedp.SetValue(chromedp.CSS("#report"), "failures"))
	// README's picture of the issue page (docs/web-issue.png).
	browsertest.Shot(t, ctx, shots, "issue-report")
	t.Logf("screenshots in %s", shots)
}
