package web

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
)

// bouncedDelivery issues a token on events for five recipients and
// records one delivery of it in which a is delivered, b refused by the
// relay, c accepted and bounced later (5.1.1), d accepted and delayed
// (4.4.1), e still pending. It returns the token's id.
func bouncedDelivery(t *testing.T, h *harness, b *browser) string {
	t.Helper()
	rcpts := []string{"a@example.net", "b@example.net", "c@example.net", "d@example.net", "e@example.net"}
	id, _, _ := b.issue(events, pasted(rcpts...))
	ctx := context.Background()
	now := time.Unix(h.now.Load(), 0)
	d := store.Delivery{ID: "d1", List: events, TokenID: id, Sender: "author@example.net", Created: now, Tag: "tagd1"}
	if _, _, err := h.db.BeginDelivery(ctx, d, rcpts); err != nil {
		t.Fatal(err)
	}
	if err := h.db.RecordOutcomes(ctx, "d1", []store.Outcome{
		{Rcpt: "a@example.net", State: store.Delivered},
		{Rcpt: "b@example.net", State: store.Failed, Detail: "550 5.7.1 <b@example.net>: relay access denied"},
		{Rcpt: "c@example.net", State: store.Delivered},
		{Rcpt: "d@example.net", State: store.Delivered},
	}, now); err != nil {
		t.Fatal(err)
	}
	changed, err := h.db.RecordBounces(ctx, "d1", []store.Bounce{
		{Rcpt: "c@example.net", Kind: store.BounceFailed, Status: "5.1.1", Detail: "smtp; 550 5.1.1 <c@example.net>: user unknown"},
		{Rcpt: "d@example.net", Kind: store.BounceDelayed, Status: "4.4.1", Detail: "smtp; 451 4.4.1 connection timed out"},
	}, now, time.Hour)
	if err != nil || len(changed) != 2 {
		t.Fatalf("recording the bounces: %v, %v", changed, err)
	}
	return id
}

// rcptCells returns the text of the recipient's row in the page.
func rcptCells(t *testing.T, page, rcpt string) string {
	t.Helper()
	m := regexp.MustCompile(`<tr><td>` + regexp.QuoteMeta(rcpt) + `</td>(.*?)</tr>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no row for %s:\n%s", rcpt, page)
	}
	return html.UnescapeString(m[1])
}

// TestBouncesShown: a token's page shows each recipient as the journal
// has it — delivered; failed with the relay's reply; bounced and delayed
// with the status and diagnostic the receiving side reported, said to be
// its report; pending — and says what bounced and delayed mean; the
// overview counts bounced recipients as failed. In Bokmål too.
func TestBouncesShown(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	b.signIn(bob)
	id := bouncedDelivery(t, h, b)
	page := b.get("/tokens/" + id).Body
	for rcpt, wants := range map[string][]string{
		"a@example.net": {`class="state ok">delivered<`},
		"b@example.net": {`class="state bad">failed<`, "550 5.7.1 <b@example.net>: relay access denied"},
		"c@example.net": {`class="state bad">bounced<`, "<code>5.1.1</code> smtp; 550 5.1.1 <c@example.net>: user unknown", "reported later by the recipient's mail server"},
		"d@example.net": {`class="state wait">delayed<`, "<code>4.4.1</code> smtp; 451 4.4.1 connection timed out", "reported later"},
		"e@example.net": {`class="state wait">pending<`},
	} {
		row := rcptCells(t, page, rcpt)
		for _, want := range wants {
			if !strings.Contains(row, html.UnescapeString(want)) {
				t.Errorf("the row of %s lacks %q:\n%s", rcpt, want, row)
			}
		}
		if (rcpt == "a@example.net" || rcpt == "e@example.net" || rcpt == "b@example.net") && strings.Contains(row, "reported later") {
			t.Errorf("the row of %s claims a later report:\n%s", rcpt, row)
		}
	}
	text := html.UnescapeString(page)
	for _, want := range []string{"1 delivered, 1 delayed, 1 failed, 1 bounced, 1 pending.", "Bounced: our relay handed the copy on", "Delayed: the recipient's mail server", "What the mail servers said"} {
		if !strings.Contains(text, want) {
			t.Errorf("the token page lacks %q", want)
		}
	}
	// The overview: b and c are the failed recipients.
	if over := b.get("/").Body; !strings.Contains(over, `<span class="badge bad">2</span>`) {
		t.Errorf("the overview does not count the bounced recipient as failed:\n%s", over)
	}
	nb := b.get("/tokens/" + id + "?lang=nb").Body
	for rcpt, want := range map[string]string{"c@example.net": ">i retur<", "d@example.net": ">forsinket<"} {
		if row := rcptCells(t, nb, rcpt); !strings.Contains(row, want) || !strings.Contains(row, "meldt senere") {
			t.Errorf("Bokmål row of %s lacks %q:\n%s", rcpt, want, row)
		}
	}
	if !strings.Contains(html.UnescapeString(nb), "1 levert, 1 forsinket, 1 mislyktes, 1 i retur, 1 venter.") {
		t.Error("the Bokmål page does not count the bounce")
	}
}

// TestIssueReportChoice: the issue form offers the sender's report, the
// list's setting (named) by default; the choice is the token's, shown on
// its page; a value not offered is refused in words and issues nothing.
func TestIssueReportChoice(t *testing.T) {
	h := newHarness(t, func(s *Settings) { s.Tokens.Rules.List(mustAddr(t, board)).Report = store.ReportSummary })
	b := h.browser()
	b.signIn(alice)
	form := html.UnescapeString(b.get("/lists/" + board + "/issue").Body)
	if !strings.Contains(form, `<option value="" selected>The list's setting (after every mail: how many it reached, and who failed)</option>`) ||
		!strings.Contains(form, `<label for="report">Delivery report to the sender</label>`) {
		t.Fatalf("the issue form's report choice:\n%s", form)
	}
	// events has no report setting: none.
	bb := h.browser()
	bb.signIn(bob)
	if f := html.UnescapeString(bb.get("/lists/" + events + "/issue").Body); !strings.Contains(f, `<option value="" selected>The list's setting (none)</option>`) {
		t.Errorf("a list without a report setting:\n%s", f)
	}
	for _, c := range []struct{ report, page string }{
		{"failures", "only when a copy failed or is delayed"},
		{"none", ">none<"},
		{"", "The list's setting (after every mail"},
	} {
		f := url.Values{"recipients_mode": {"list"}, "report": {c.report}}
		id, _, _ := b.issue(board, f)
		if got := h.token(id).Report; got != c.report {
			t.Errorf("report %q: the token has %q", c.report, got)
		}
		page := html.UnescapeString(b.get("/tokens/" + id).Body)
		if m := regexp.MustCompile(`<dd id="report">(.*?)</dd>`).FindStringSubmatch(page); m == nil || !strings.Contains(m[0], c.page) {
			t.Errorf("report %q: the token page says %v", c.report, m)
		}
	}
	r := b.post("/lists/"+board+"/issue", url.Values{"csrf": {b.csrf()}, "recipients_mode": {"list"}, "report": {"daily"}})
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(r.Body, "Choose one of the reports offered.") ||
		!strings.Contains(r.Body, `aria-describedby="report-hint report-err" aria-invalid="true"`) || tokenRe.MatchString(r.Body) {
		t.Errorf("a report not offered: %d\n%s", r.Status, r.Body)
	}
	if nb := html.UnescapeString(b.get("/lists/" + board + "/issue?lang=nb").Body); !strings.Contains(nb, "Listens innstilling (etter hver e-post") ||
		!strings.Contains(nb, "Leveringsrapport til avsenderen") {
		t.Error("the report choice in Bokmål")
	}
}
