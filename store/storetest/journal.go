package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

func testJournal(t *testing.T, b Backend) {
	ctx := context.Background()
	db := open1(t, b)
	now := time.Now().UTC().Truncate(time.Second)
	r, _ := record("board@example.org", 1)
	add(t, db, r)
	rcpts := make([]string, 1200) // more than one statement's worth
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("m%04d@example.org", i)
	}
	rcpts = append(rcpts, rcpts[0]) // given twice, recorded once
	d := store.Delivery{ID: "q1", List: r.List, TokenID: r.ID, Sender: "s@example.net", HideSender: true, Created: now}
	rec, existing, err := db.BeginDelivery(ctx, d, rcpts)
	if err != nil || existing || rec.ID != "q1" {
		t.Fatalf("BeginDelivery = %+v, %v, %v", rec, existing, err)
	}
	// Postfix hands it over again: the record, nothing spent.
	rec, existing, err = db.BeginDelivery(ctx, d, rcpts)
	if err != nil || !existing || !rec.HideSender || rec.Sender != "s@example.net" || !rec.Created.Equal(now) {
		t.Fatalf("second BeginDelivery = %+v, %v, %v", rec, existing, err)
	}
	// Another delivery on the used-up token is refused and records nothing.
	if _, _, err := db.BeginDelivery(ctx, store.Delivery{ID: "q2", List: r.List, TokenID: r.ID, Created: now}, rcpts[:1]); !errors.Is(err, token.ErrUsedUp) {
		t.Errorf("BeginDelivery on a used token: %v", err)
	}
	if _, err := db.Delivery(ctx, "q2"); !errors.Is(err, store.ErrNoDelivery) {
		t.Errorf("refused delivery recorded: %v", err)
	}
	pending, err := db.PendingRecipients(ctx, "q1")
	if err != nil || len(pending) != 1200 || pending[0] != "m0000@example.org" {
		t.Fatalf("PendingRecipients = %d, %v", len(pending), err)
	}
	outs := []store.Outcome{{Rcpt: rcpts[0], State: store.Delivered}, {Rcpt: rcpts[1], State: store.Failed, Detail: "550 no"}}
	for _, r := range rcpts[2:700] {
		outs = append(outs, store.Outcome{Rcpt: r, State: store.Delivered})
	}
	if err := db.RecordOutcomes(ctx, "q1", outs, now); err != nil {
		t.Fatal(err)
	}
	// A recipient final already stays as it is.
	if err := db.RecordOutcomes(ctx, "q1", []store.Outcome{{Rcpt: rcpts[0], State: store.Failed, Detail: "late"}}, now); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordOutcomes(ctx, "q1", []store.Outcome{{Rcpt: rcpts[0], State: store.Pending}}, now); err == nil {
		t.Error("a pending outcome was accepted")
	}
	c, err := db.DeliveryCounts(ctx, "q1")
	if err != nil || c != (store.Counts{Pending: 500, Delivered: 699, Failed: 1}) {
		t.Errorf("DeliveryCounts = %+v, %v", c, err)
	}
	if d, _ := db.Delivery(ctx, "q1"); !d.Completed.IsZero() {
		t.Error("completed with recipients pending")
	}
	// Giving up: the pending ones fail.
	c, err = db.FinishDelivery(ctx, "q1", "gave up", now)
	if err != nil || c != (store.Counts{Delivered: 699, Failed: 501}) {
		t.Errorf("FinishDelivery = %+v, %v", c, err)
	}
	if d, _ := db.Delivery(ctx, "q1"); !d.Completed.Equal(now) {
		t.Errorf("Completed = %v, want %v", d.Completed, now)
	}
	if p, _ := db.PendingRecipients(ctx, "q1"); len(p) != 0 {
		t.Errorf("%d pending after finishing", len(p))
	}
	if _, err := db.Delivery(ctx, "nosuch"); !errors.Is(err, store.ErrNoDelivery) {
		t.Errorf("unknown delivery: %v", err)
	}
}

func testListing(t *testing.T, b Backend) {
	ctx := context.Background()
	db := open1(t, b)
	now := time.Now().UTC().Truncate(time.Second)
	var ids []string
	for i := range 7 {
		r, _ := record("board@example.org", 1)
		r.Created = now.Add(time.Duration(i) * time.Second)
		r.Owner = []string{"alice", "bob"}[i%2]
		add(t, db, r)
		ids = append(ids, r.ID)
	}
	if _, err := db.Spend(ctx, ids[0], "d0", now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.BeginDelivery(ctx, store.Delivery{ID: "d1", List: "board@example.org", TokenID: ids[1], Created: now},
		[]string{"a@example.org", "b@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeToken(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	other, _ := record("other@example.org", 1)
	add(t, db, other)

	q := store.TokenQuery{List: "board@example.org", Limit: 3, Now: now}
	var seen []string
	for page := 0; ; page++ {
		p, err := db.ListTokens(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if p.Counts != (store.StateCounts{Active: 4, Used: 2, Revoked: 1}) {
			t.Errorf("page %d counts = %+v", page, p.Counts)
		}
		for _, r := range p.Tokens {
			seen = append(seen, r.ID)
		}
		if p.Next == nil {
			break
		}
		q.After = p.Next
	}
	if len(seen) != 7 || seen[0] != ids[6] || seen[6] != ids[0] {
		t.Errorf("pages = %v; want the 7, newest first", seen)
	}
	p, err := db.ListTokens(ctx, store.TokenQuery{List: "board@example.org", Owner: "alice", State: store.StateActive, Limit: 10, Now: now})
	if err != nil || len(p.Tokens) != 2 || p.Counts.Total() != 4 {
		t.Errorf("alice's active tokens = %d (counts %+v), %v; want 2 of 4 (0 used, 2 revoked)", len(p.Tokens), p.Counts, err)
	}
	sums, err := db.ListSummaries(ctx, now)
	if err != nil || sums["board@example.org"].Tokens.Active != 4 || sums["board@example.org"].PendingDeliveries != 1 ||
		sums["other@example.org"].Tokens.Active != 1 {
		t.Errorf("ListSummaries = %+v, %v", sums, err)
	}
	dd, err := db.TokenDeliveries(ctx, ids[1], 1)
	if err != nil || len(dd) != 1 || dd[0].Counts.Pending != 2 || len(dd[0].Recipients) != 1 || !dd[0].Truncated {
		t.Errorf("TokenDeliveries = %+v, %v", dd, err)
	}
}

func testAPIKeys(t *testing.T, b Backend) {
	ctx := context.Background()
	db := open1(t, b)
	now := time.Now().UTC().Truncate(time.Second)
	k := store.APIKey{ID: "k1", Name: "portal", Hash: [32]byte{1}, Lists: []string{"board@example.org"}, Scopes: []string{"issue", "read"}, Created: now}
	if err := db.AddAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	dup := k
	dup.ID, dup.Hash = "k2", [32]byte{2}
	if err := db.AddAPIKey(ctx, dup); !errors.Is(err, store.ErrAPIKeyName) {
		t.Errorf("second key named portal: %v, want ErrAPIKeyName", err)
	}
	got, err := db.APIKeyByHash(ctx, [32]byte{1})
	if err != nil || got.Name != "portal" || len(got.Scopes) != 2 || got.Lists[0] != "board@example.org" || got.Revoked {
		t.Errorf("APIKeyByHash = %+v, %v", got, err)
	}
	if _, err := db.APIKeyByHash(ctx, [32]byte{9}); !errors.Is(err, store.ErrNoAPIKey) {
		t.Errorf("unknown key: %v", err)
	}
	if err := db.TouchAPIKey(ctx, "k1", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := db.TouchAPIKey(ctx, "k1", now); err != nil { // older: ignored
		t.Fatal(err)
	}
	if got, _ := db.APIKeyByHash(ctx, [32]byte{1}); !got.LastUsed.Equal(now.Add(time.Minute)) {
		t.Errorf("LastUsed = %v", got.LastUsed)
	}
	if rk, err := db.RevokeAPIKey(ctx, "portal"); err != nil || !rk.Revoked || rk.ID != "k1" {
		t.Errorf("RevokeAPIKey = %+v, %v", rk, err)
	}
	if _, err := db.RevokeAPIKey(ctx, "portal"); !errors.Is(err, store.ErrNoAPIKey) {
		t.Errorf("revoking twice: %v", err)
	}
	// The name is free again once revoked.
	if err := db.AddAPIKey(ctx, dup); err != nil {
		t.Errorf("reusing a revoked key's name: %v", err)
	}
	if all, err := db.APIKeys(ctx); err != nil || len(all) != 2 {
		t.Errorf("APIKeys = %d, %v", len(all), err)
	}
}

func testWebhooks(t *testing.T, b Backend) {
	ctx := context.Background()
	db := open1(t, b)
	now := time.Now().UTC().Truncate(time.Second)
	const a, c = "https://a.example/hook", "https://c.example/hook"
	eps := []store.WebhookEndpoint{{URL: a, Events: store.EventTypes}, {URL: c, Events: []string{store.EventTokenSpent}}}
	if err := db.SetWebhookEndpoints(ctx, eps, now); err != nil {
		t.Fatal(err)
	}
	if err := db.SetWebhookEndpoints(ctx, eps, now); err != nil { // again: the same
		t.Fatal(err)
	}
	r, _ := record("board@example.org", 2)
	add(t, db, r)
	if _, _, err := db.BeginDelivery(ctx, store.Delivery{ID: "w1", List: r.List, TokenID: r.ID, Created: now}, []string{"x@example.org", "y@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordOutcomes(ctx, "w1", []store.Outcome{{Rcpt: "x@example.org", State: store.Delivered}}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FinishDelivery(ctx, "w1", "550 gone", now); err != nil {
		t.Fatal(err)
	}
	due, err := db.DueWebhooks(ctx, a, now, 10)
	if err != nil || len(due) != 3 {
		t.Fatalf("DueWebhooks(a) = %d, %v; want spent, completed, failed_recipients", len(due), err)
	}
	var ev store.Event
	if err := json.Unmarshal(due[0].Payload, &ev); err != nil || ev.Type != store.EventTokenSpent || *ev.Data.UsesLeft != 1 {
		t.Errorf("first event = %s, %v", due[0].Payload, err)
	}
	if due[0].Seq >= due[1].Seq || due[1].Seq >= due[2].Seq || due[2].Type != store.EventFailedRecipients {
		t.Errorf("events out of order: %+v", due)
	}
	if due, _ := db.DueWebhooks(ctx, c, now, 10); len(due) != 1 {
		t.Errorf("DueWebhooks(c) = %d, want 1", len(due))
	}
	next := now.Add(time.Minute)
	for _, m := range due {
		if ok, err := db.ClaimWebhook(ctx, a, m.Seq, "host-a", now, now.Add(time.Second)); !ok || err != nil {
			t.Fatalf("ClaimWebhook(%d) = %v, %v", m.Seq, ok, err)
		}
	}
	if err := db.RecordWebhookAttempt(ctx, a, due[0].Seq, store.WebhookAttempt{Owner: "host-a", Delivered: true}, now); err != nil {
		t.Fatal(err)
	}
	// A failure is recorded by the claim's holder only.
	if err := db.RecordWebhookAttempt(ctx, a, due[1].Seq, store.WebhookAttempt{Owner: "host-b", Err: "500", Next: now.Add(time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordWebhookAttempt(ctx, a, due[1].Seq, store.WebhookAttempt{Owner: "host-a", Err: "500", Next: next}, now); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordWebhookAttempt(ctx, a, due[2].Seq, store.WebhookAttempt{Owner: "host-a", Err: "410", GiveUp: true}, now); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := db.NextWebhookAttempt(ctx, a); err != nil || !ok || !got.Equal(next) {
		t.Errorf("NextWebhookAttempt(a) = %v, %v, %v; want the retry at %v", got, ok, err, next)
	}
	pending, failed, err := db.WebhookStats(ctx)
	if err != nil || pending != 2 || failed != 1 {
		t.Errorf("WebhookStats = %d, %d, %v; want 2 pending (a's retry, c's), 1 failed", pending, failed, err)
	}
	// A host configured with a only leaves c alone (another host may
	// send to it); once nobody has refreshed c for a while, it is dropped
	// and its queued message fails.
	later := now.Add(2 * time.Hour)
	if err := db.SetWebhookEndpoints(ctx, eps[:1], later); err != nil {
		t.Fatal(err)
	}
	if pending, failed, _ := db.WebhookStats(ctx); pending != 2 || failed != 1 {
		t.Errorf("after a host without c started: %d pending, %d failed; want c's still pending", pending, failed)
	}
	if dropped, err := db.ExpireWebhookEndpoints(ctx, now, later); err != nil || len(dropped) != 0 {
		t.Errorf("expiring what is older than the last refresh: %v, %v", dropped, err)
	}
	if dropped, err := db.ExpireWebhookEndpoints(ctx, now.Add(time.Hour), now); err != nil || len(dropped) != 1 || dropped[0] != c {
		t.Errorf("ExpireWebhookEndpoints = %v, %v; want c", dropped, err)
	}
	if pending, failed, _ := db.WebhookStats(ctx); pending != 1 || failed != 2 {
		t.Errorf("after c expired: %d pending, %d failed", pending, failed)
	}
	if err := db.PruneWebhooks(ctx, now.Add(time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if pending, failed, _ := db.WebhookStats(ctx); pending != 1 || failed != 0 {
		t.Errorf("after pruning: %d pending, %d failed", pending, failed)
	}
	// A new event after pruning gets a fresh sequence number.
	if _, _, err := db.BeginDelivery(ctx, store.Delivery{ID: "w2", List: r.List, TokenID: r.ID, Created: now}, []string{"x@example.org"}); err != nil {
		t.Fatal(err)
	}
	if due, _ := db.DueWebhooks(ctx, a, next, 10); len(due) != 2 || due[1].Seq <= due[0].Seq {
		t.Errorf("after a new event: %+v", due)
	}
}

func testStats(t *testing.T, b Backend) {
	ctx := context.Background()
	db := open1(t, b)
	now := time.Now()
	r, _ := record("board@example.org", 3)
	add(t, db, r)
	used, _ := record("board@example.org", 1)
	add(t, db, used)
	if _, _, err := db.BeginDelivery(ctx, store.Delivery{ID: "s1", List: r.List, TokenID: used.ID, Created: now}, []string{"a@example.org", "b@example.org"}); err != nil {
		t.Fatal(err)
	}
	st, err := db.Stats(ctx, now)
	if err != nil || len(st.Tokens) != 1 || st.Tokens[0] != (store.TokenStats{List: "board@example.org", Issued: 2, Spent: 1, Active: 1}) ||
		st.PendingRecipients != 2 || st.PendingDeliveries != 1 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	if err := db.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func testSchemaVersion(t *testing.T, b Backend) {
	ctx := context.Background()
	addr := b.NewDB(t)
	db, err := b.Open(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	v, err := db.SchemaVersion(ctx)
	if err != nil || v < 3 {
		t.Fatalf("SchemaVersion = %d, %v", v, err)
	}
	db.Close()
	// Opening again migrates nothing.
	db, err = b.Open(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := db.SchemaVersion(ctx); again != v {
		t.Errorf("version %d after reopening, want %d", again, v)
	}
	db.Close()
	b.SetSchemaVersion(t, addr, v+1)
	if db, err := b.Open(ctx, addr); err == nil {
		db.Close()
		t.Error("a newer schema was opened")
	}
}
