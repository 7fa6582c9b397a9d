package store

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/token"
)

func TestStats(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	now := time.Now()
	st, err := db.Stats(ctx, now)
	if err != nil || len(st.Tokens) != 0 || st.PendingRecipients != 0 || st.PendingDeliveries != 0 {
		t.Fatalf("empty store: %+v, %v", st, err)
	}
	active, _ := newRecord(2)
	used, _ := newRecord(1)
	used.UsesSpent = 1
	revoked, _ := newRecord(1)
	revoked.Revoked = true
	expired, _ := newRecord(1)
	expired.Expires = now.Add(-time.Minute)
	other, _ := newRecord(1)
	other.List = "events@example.org"
	for _, r := range []token.Record{active, used, revoked, expired, other} {
		add(t, db, r)
	}
	// A delivery spends a use of active and leaves two recipients pending.
	d := Delivery{ID: "d1", List: active.List, TokenID: active.ID, Sender: "a@example.net", Created: now}
	if _, _, err := db.BeginDelivery(ctx, d, []string{"x@example.com", "y@example.com", "z@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordOutcomes(ctx, "d1", []Outcome{{Rcpt: "x@example.com", State: Delivered}}, now); err != nil {
		t.Fatal(err)
	}
	st, err = db.Stats(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		Tokens: []TokenStats{
			{List: "board@example.org", Issued: 4, Spent: 2, Active: 1},
			{List: "events@example.org", Issued: 1, Spent: 0, Active: 1},
		},
		PendingRecipients: 2, PendingDeliveries: 1,
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Stats = %+v\nwant %+v", st, want)
	}
	if _, err := db.FinishDelivery(ctx, "d1", "gave up", now); err != nil {
		t.Fatal(err)
	}
	if st, err = db.Stats(ctx, now); err != nil || st.PendingRecipients != 0 || st.PendingDeliveries != 0 {
		t.Errorf("after finishing: %+v, %v", st, err)
	}
}

// TestOpenReadOnly: a read-only handle reads what a writer (a running
// daemon) stores, and refuses to write — spending included.
func TestOpenReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, path := open(t)
	rec, tok := newRecord(1)
	add(t, db, rec)
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	got, err := ro.TokenByHash(ctx, token.HashOf(tok))
	if err != nil || got.ID != rec.ID {
		t.Fatalf("read-only lookup: %+v, %v", got, err)
	}
	if _, err := ro.Spend(ctx, rec.ID, "d1", time.Now()); err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Errorf("Spend on a read-only store: %v, want a readonly error", err)
	}
	if got, _ := db.TokenByID(ctx, rec.ID); got.UsesSpent != 0 {
		t.Errorf("the read-only handle spent the token")
	}
	if _, err := OpenReadOnly(ctx, filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Errorf("a missing store opened read-only")
	}
}
