package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/pgtest"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// TestCopyToPostgres copies a SQLite store with something in every table
// into PostgreSQL twice: the first run copies every row, the second none;
// a row that differs in the target is left alone and reported; the copy
// works as a store afterwards (a token spent, webhook numbering goes on).
// A bounced delivery keeps its tag, Message-ID and bounce state, its
// report stays due; a delivery's lease and a webhook message's claim
// arrive empty (the new hosts take over at once); sign-in links and
// sessions are not copied.
func TestCopyToPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	src, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.SetWebhookEndpoints(ctx, []store.WebhookEndpoint{{URL: "https://hook.example/", Events: store.EventTypes}}, now); err != nil {
		t.Fatal(err)
	}
	var recs []token.Record
	var toks []string
	for i := range 3 {
		tok := token.Generate()
		r := token.Record{ID: token.NewID(), Hash: token.HashOf(tok), List: "board@example.org", Created: now, UsesAllowed: 2, Owner: "portal"}
		if _, _, err := src.IssueToken(ctx, r, &store.Idempotency{Scope: "k1", Key: fmt.Sprint(i), Fingerprint: [32]byte{byte(i)}}, now); err != nil {
			t.Fatal(err)
		}
		recs, toks = append(recs, r), append(toks, tok)
	}
	rcpts := make([]string, 1100)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("m%d@example.net", i)
	}
	if _, _, err := src.BeginDelivery(ctx, store.Delivery{ID: "d1", List: "board@example.org", TokenID: recs[0].ID, Sender: "s@example.net", HideSender: true, Created: now}, rcpts); err != nil {
		t.Fatal(err)
	}
	if _, err := src.FinishDelivery(ctx, "d1", "gave up", now); err != nil {
		t.Fatal(err)
	}
	// A bounced delivery whose report is due, one in flight under the
	// lease of the host being retired, a claimed webhook message, a web
	// session and a sign-in link.
	extra := token.Record{ID: token.NewID(), Hash: token.HashOf(token.Generate()), List: "board@example.org", Created: now, UsesAllowed: 5}
	if err := src.AddToken(ctx, extra); err != nil {
		t.Fatal(err)
	}
	d3 := store.Delivery{ID: "d3", List: "board@example.org", TokenID: extra.ID, Sender: "s@example.net", Created: now,
		Tag: "tagbounce1", Report: store.ReportSummary, MessageID: "<m3@example.net>"}
	if _, _, err := src.BeginDelivery(ctx, d3, []string{"a@example.net", "b@example.net"}); err != nil {
		t.Fatal(err)
	}
	if err := src.RecordOutcomes(ctx, "d3", []store.Outcome{{Rcpt: "a@example.net", State: store.Delivered}, {Rcpt: "b@example.net", State: store.Delivered}}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := src.FinishDelivery(ctx, "d3", "", now); err != nil {
		t.Fatal(err)
	}
	if got, err := src.RecordBounces(ctx, "d3", []store.Bounce{{Rcpt: "a@example.net", Kind: store.BounceFailed, Status: "5.1.1"}}, now, time.Hour); err != nil || len(got) != 1 {
		t.Fatalf("RecordBounces = %v, %v", got, err)
	}
	d4 := store.Delivery{ID: "d4", List: "board@example.org", TokenID: extra.ID, Sender: "s@example.net", Created: now,
		LeaseOwner: "old-host/1/abc", LeaseUntil: now.Add(time.Hour)}
	if _, _, err := src.BeginDelivery(ctx, d4, []string{"c@example.net"}); err != nil {
		t.Fatal(err)
	}
	due, err := src.DueWebhooks(ctx, "https://hook.example/", now, 1)
	if err != nil || len(due) != 1 {
		t.Fatalf("DueWebhooks = %v, %v", due, err)
	}
	if ok, err := src.ClaimWebhook(ctx, "https://hook.example/", due[0].Seq, "old-host/1/abc", now, now.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("ClaimWebhook = %v, %v", ok, err)
	}
	session, link := sha256.Sum256([]byte("session")), sha256.Sum256([]byte("link"))
	if err := src.AddWebSession(ctx, session, "sec@example.org", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := src.AddSignInLink(ctx, link, "sec@example.org", now, now.Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := src.AddAPIKey(ctx, store.APIKey{ID: "k1", Name: "portal", Hash: [32]byte{1}, Lists: []string{"*"}, Scopes: []string{"issue"}, Created: now}); err != nil {
		t.Fatal(err)
	}

	c := pgtest.Shared(t)
	url := c.NewDB(t)
	dst, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	// A row the target has already, with other values: a conflict.
	clash := token.Record{ID: recs[2].ID, Hash: token.HashOf(token.Generate()), List: "other@example.org", Created: now, UsesAllowed: 1}
	if err := dst.AddToken(ctx, clash); err != nil {
		t.Fatal(err)
	}

	first, err := src.CopyTo(ctx, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	byTable := map[string]store.CopyTable{}
	for _, ct := range first {
		byTable[ct.Table] = ct
	}
	want := map[string]int{"tokens": 3, "spends": 3, "deliveries": 3, "delivery_recipients": 1103, "idempotency_keys": 3,
		"api_keys": 1, "webhook_endpoints": 1, "webhook_events": 6, "webhook_queue": 6, "reports": 1}
	for table, n := range want {
		if byTable[table].Copied != n {
			t.Errorf("first copy of %s: %+v; want %d copied", table, byTable[table], n)
		}
	}
	if tc := byTable["tokens"]; len(tc.Conflicts) != 1 || !strings.Contains(tc.Conflicts[0], "id="+recs[2].ID) {
		t.Errorf("token conflicts = %q", tc.Conflicts)
	}
	for _, table := range []string{"web_sessions", "web_signin_links"} {
		if ct, ok := byTable[table]; !ok || ct.Skipped == "" || ct.Copied != 0 {
			t.Errorf("%s: %+v; want it named and skipped", table, ct)
		}
	}

	second, err := src.CopyTo(ctx, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range second {
		if ct.Table != "tokens" && len(ct.Conflicts) > 0 {
			t.Errorf("second copy of %s: conflicts %q", ct.Table, ct.Conflicts)
		}
		if ct.Copied != 0 {
			t.Errorf("second copy of %s copied %d rows", ct.Table, ct.Copied)
		}
		if ct.Present != byTable[ct.Table].Copied+byTable[ct.Table].Present {
			t.Errorf("second copy of %s: %d present, want %d", ct.Table, ct.Present, byTable[ct.Table].Copied)
		}
	}

	// The copy is a working store.
	if got, err := dst.TokenByHash(ctx, token.HashOf(toks[1])); err != nil || got.Owner != "portal" || got.UsesAllowed != 2 {
		t.Errorf("copied token = %+v, %v", got, err)
	}
	if d, err := dst.Delivery(ctx, "d1"); err != nil || !d.HideSender || d.Completed.IsZero() {
		t.Errorf("copied delivery = %+v, %v", d, err)
	}
	if c, _ := dst.DeliveryCounts(ctx, "d1"); c.Failed != 1100 {
		t.Errorf("copied counts = %+v", c)
	}
	if _, _, err := dst.BeginDelivery(ctx, store.Delivery{ID: "d2", List: "board@example.org", TokenID: recs[1].ID, Created: now}, rcpts[:1]); err != nil {
		t.Errorf("a delivery on the copy: %v", err)
	}
	due, err = dst.DueWebhooks(ctx, "https://hook.example/", now.Add(time.Hour), 20)
	if err != nil || len(due) != 7 || due[6].Seq <= due[5].Seq {
		t.Errorf("webhooks on the copy = %+v, %v; want the 6 copied and a new one after them", due, err)
	}
	if ok, err := dst.ClaimWebhook(ctx, "https://hook.example/", due[0].Seq, "new-host", now.Add(time.Hour), now.Add(2*time.Hour)); !ok || err != nil {
		t.Errorf("claiming the message the old host had claimed: %v, %v", ok, err)
	}

	// The bounce, its report, the Message-ID key, the lease.
	if d, err := dst.DeliveryByTag(ctx, "tagbounce1"); err != nil || d.ID != "d3" || d.Report != store.ReportSummary {
		t.Errorf("DeliveryByTag on the copy = %+v, %v", d, err)
	}
	if d, err := dst.DeliveryByMessage(ctx, "board@example.org", extra.ID, "<m3@example.net>"); err != nil || d.ID != "d3" {
		t.Errorf("DeliveryByMessage on the copy = %+v, %v", d, err)
	}
	if dd, err := dst.DeliveryDetailOf(ctx, "d3", 10); err != nil || dd.Counts.Bounced != 1 || dd.Counts.Delivered != 1 {
		t.Errorf("bounced delivery on the copy = %+v, %v", dd, err)
	}
	if reps, err := dst.DueReports(ctx, now, 10); err != nil || len(reps) != 1 || reps[0].DeliveryID != "d3" {
		t.Errorf("reports due on the copy = %+v, %v", reps, err)
	}
	if d, err := dst.Delivery(ctx, "d4"); err != nil || d.LeaseOwner != "" || !d.LeaseUntil.IsZero() {
		t.Errorf("leased delivery on the copy = %+v, %v; want its lease empty", d, err)
	}
	if ok, err := dst.AcquireLease(ctx, "d4", "new-host", now, now.Add(time.Minute)); !ok || err != nil {
		t.Errorf("a new host taking the copied delivery: %v, %v", ok, err)
	}
	if _, err := dst.WebSessionByHash(ctx, session, now); !errors.Is(err, store.ErrNoSignIn) {
		t.Errorf("a web session was copied: %v", err)
	}
	if _, err := dst.UseSignInLink(ctx, link, now); !errors.Is(err, store.ErrNoSignIn) {
		t.Errorf("a sign-in link was copied: %v", err)
	}
}
