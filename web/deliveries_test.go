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
	"github.com/restrictedmail/restrictedmail/tokenops"
)

// TestDeliveriesAndAttention: a token's page shows each recipient as the
// journal has it (failed with the relay's reply, pending, delivered), and
// the overview puts the list that needs attention first, with its counts.
func TestDeliveriesAndAttention(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	b.signIn(bob)
	id, _, _ := b.issue(events, pasted("a@example.net", "b@example.net", "c@example.net"))
	ctx := context.Background()
	now := time.Unix(h.now.Load(), 0)
	d := store.Delivery{ID: "d1", List: events, TokenID: id, Sender: "author@example.net", Created: now}
	if _, _, err := h.db.BeginDelivery(ctx, d, []string{"a@example.net", "b@example.net", "c@example.net"}); err != nil {
		t.Fatal(err)
	}
	if err := h.db.RecordOutcomes(ctx, "d1", []store.Outcome{
		{Rcpt: "a@example.net", State: store.Delivered},
		{Rcpt: "b@example.net", State: store.Failed, Detail: "550 5.1.1 <b@example.net>: no such user"},
	}, now); err != nil {
		t.Fatal(err)
	}
	page := b.get("/tokens/" + id)
	for _, want := range []string{"in progress", "1 delivered, 1 failed, 1 pending.", "no such user", ">failed<", ">pending<", ">delivered<", "author@example.net", ">used<"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("the token page lacks %q", want)
		}
	}
	// The admin's overview: events (a failed recipient, a delivery in
	// progress) comes before board, which comes first in the configuration.
	ad := h.browser()
	ad.signIn(root)
	over := ad.get("/").Body
	if i, j := strings.Index(over, events), strings.Index(over, board); i < 0 || j < 0 || i > j {
		t.Fatalf("the list needing attention is not first:\n%s", over)
	}
	if !strings.Contains(over, `class="card attention"`) || !strings.Contains(over, `<span class="badge bad">1</span>`) || !strings.Contains(over, `<span class="badge wait">1</span>`) {
		t.Errorf("no attention badges:\n%s", over)
	}
	// Finished: complete, the pending recipient given up as failed.
	if _, err := h.db.FinishDelivery(ctx, "d1", "gave up after 4 days", now); err != nil {
		t.Fatal(err)
	}
	if page := b.get("/tokens/" + id); !strings.Contains(page.Body, "complete ") || !strings.Contains(page.Body, "gave up after 4 days") {
		t.Errorf("finished delivery:\n%s", page.Body)
	}
	// The list page filters by state.
	if r := b.get("/lists/" + events + "/?state=used"); !strings.Contains(r.Body, id) {
		t.Error("the used filter does not show the used token")
	}
	if r := b.get("/lists/" + events + "/?state=active"); strings.Contains(r.Body, `href="/tokens/`+id+`"`) {
		t.Error("the active filter shows a used token")
	}
	if r := b.get("/lists/" + events + "/?state=bogus&after=%%%"); r.Status != http.StatusOK {
		t.Errorf("a bogus filter: %d", r.Status)
	}
	// A used token is not offered for re-keying, and re-keying it anyway
	// is refused in words.
	if r := b.post("/tokens/"+id+"/rekey", url.Values{"csrf": {b.csrf()}}); r.Status != http.StatusConflict || !strings.Contains(r.Body, "can no longer be used") {
		t.Errorf("re-keying a used token: %d", r.Status)
	}
}

// A recipient state added later (after bounced and delayed) shows as what it is,
// not as one of the known ones.
func TestUnknownRecipientState(t *testing.T) {
	r := rcptRow{store.RecipientState{State: store.State(9)}}
	if r.StateKey() != "rcpt.other" || !r.Other() || r.Class() != "wait" {
		t.Fatalf("state 9: %s %v %s", r.StateKey(), r.Other(), r.Class())
	}
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	r.Rcpt = "z@example.net"
	v := &view{Lang: "en", cat: catalog["en"], Data: tokenData{Deliveries: []deliveryRow{{Rcpts: []rcptRow{r}}}, ListReport: "report.none"}}
	var out strings.Builder
	if err := pages["token"].Execute(&out, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `<td>z@example.net</td><td><span class="state wait">other (9)</span>`) {
		t.Errorf("state 9 on the page:\n%s", out.String())
	}
}

// TestTokensPageByPage: a list's tokens come a page at a time, newest
// first, with a link to the older ones.
func TestTokensPageByPage(t *testing.T) {
	h := newHarness(t, nil)
	ops := tokenops.New(h.db, h.set.Tokens)
	ids := map[string]bool{}
	for range tokenops.DefaultPageSize + 5 {
		is, err := ops.Issue(context.Background(), tokenops.IssueRequest{List: board})
		if err != nil {
			t.Fatal(err)
		}
		ids[is.Record.ID] = true
	}
	b := h.browser()
	b.signIn(alice)
	seen := map[string]bool{}
	path := "/lists/" + board + "/"
	for pages := 0; path != ""; pages++ {
		if pages > 2 {
			t.Fatal("more pages than tokens")
		}
		body := b.get(path).Body
		for _, m := range regexp.MustCompile(`<td><a href="/tokens/([a-z0-9]+)">`).FindAllStringSubmatch(body, -1) {
			if seen[m[1]] {
				t.Errorf("token %s on two pages", m[1])
			}
			seen[m[1]] = true
		}
		path = ""
		if m := regexp.MustCompile(`href="(/lists/[^"]+after=[^"]+)">Older tokens<`).FindStringSubmatch(body); m != nil {
			path = html.UnescapeString(m[1])
		}
	}
	if len(seen) != len(ids) {
		t.Fatalf("%d tokens shown over the pages, want %d", len(seen), len(ids))
	}
}
