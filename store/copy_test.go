package store_test

import (
	"context"
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
	want := map[string]int{"tokens": 2, "spends": 1, "deliveries": 1, "delivery_recipients": 1100, "idempotency_keys": 3,
		"api_keys": 1, "webhook_endpoints": 1, "webhook_events": 3, "webhook_queue": 3}
	for table, n := range want {
		if byTable[table].Copied != n {
			t.Errorf("first copy of %s: %+v; want %d copied", table, byTable[table], n)
		}
	}
	if tc := byTable["tokens"]; len(tc.Conflicts) != 1 || !strings.Contains(tc.Conflicts[0], "id="+recs[2].ID) {
		t.Errorf("token conflicts = %q", tc.Conflicts)
	}

	second, err := src.CopyTo(ctx, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range second {
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
	due, err := dst.DueWebhooks(ctx, "https://hook.example/", now, 10)
	if err != nil || len(due) != 4 || due[3].Seq <= due[2].Seq {
		t.Errorf("webhooks on the copy = %+v, %v; want the 3 copied and a new one after them", due, err)
	}
}
