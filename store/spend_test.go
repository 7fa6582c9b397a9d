package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/token"
)

func TestSpendIdempotentPerDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	r, _ := newRecord(2)
	add(t, db, r)
	now := time.Now()
	if spent, err := db.Spend(ctx, r.ID, "queue-A1", now); !spent || err != nil {
		t.Fatalf("first Spend = %v, %v; want true, nil", spent, err)
	}
	// Postfix hands the same message over again: nothing more is spent.
	for i := 0; i < 3; i++ {
		if spent, err := db.Spend(ctx, r.ID, "queue-A1", now); spent || err != nil {
			t.Fatalf("repeated Spend = %v, %v; want false, nil", spent, err)
		}
	}
	if got, _ := db.TokenByID(ctx, r.ID); got.UsesSpent != 1 {
		t.Errorf("UsesSpent = %d after one delivery, want 1", got.UsesSpent)
	}
	// A second delivery spends the second use.
	if spent, err := db.Spend(ctx, r.ID, "queue-B2", now); !spent || err != nil {
		t.Fatalf("second delivery = %v, %v", spent, err)
	}
	if got, _ := db.TokenByID(ctx, r.ID); got.UsesSpent != 2 || got.UsesLeft() != 0 {
		t.Errorf("UsesSpent = %d, want 2", got.UsesSpent)
	}
	// A third is refused; the first two still are no-ops, not refusals.
	if spent, err := db.Spend(ctx, r.ID, "queue-C3", now); spent || !errors.Is(err, token.ErrUsedUp) {
		t.Errorf("third delivery = %v, %v; want ErrUsedUp", spent, err)
	}
	if spent, err := db.Spend(ctx, r.ID, "queue-B2", now); spent || err != nil {
		t.Errorf("repeated second delivery on a used-up token = %v, %v; want false, nil", spent, err)
	}
	// One delivery cannot spend two tokens.
	other, _ := newRecord(1)
	add(t, db, other)
	if spent, err := db.Spend(ctx, other.ID, "queue-A1", now); spent || err == nil {
		t.Errorf("delivery spending a second token = %v, %v; want an error", spent, err)
	}
	if got, _ := db.TokenByID(ctx, other.ID); got.UsesSpent != 0 {
		t.Error("the refused spend changed the other token")
	}
}

func TestSpendRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

	expired, _ := newRecord(1)
	expired.Expires = now
	add(t, db, expired)
	if spent, err := db.Spend(ctx, expired.ID, "d-expired", now); spent || !errors.Is(err, token.ErrExpired) {
		t.Errorf("expired: %v, %v", spent, err)
	}
	if spent, err := db.Spend(ctx, expired.ID, "d-early", now.Add(-time.Second)); !spent || err != nil {
		t.Errorf("a second before expiry: %v, %v", spent, err)
	}

	revoked, _ := newRecord(1)
	revoked.Revoked = true
	add(t, db, revoked)
	if spent, err := db.Spend(ctx, revoked.ID, "d-revoked", now); spent || !errors.Is(err, token.ErrRevoked) {
		t.Errorf("revoked: %v, %v", spent, err)
	}
	// Revocation wins over expiry and use.
	both, _ := newRecord(1)
	both.Revoked, both.Expires, both.UsesSpent = true, now.Add(-time.Hour), 1
	add(t, db, both)
	if _, err := db.Spend(ctx, both.ID, "d-both", now); !errors.Is(err, token.ErrRevoked) {
		t.Errorf("revoked, expired and used: %v", err)
	}

	used, _ := newRecord(1)
	used.UsesSpent = 1
	add(t, db, used)
	if spent, err := db.Spend(ctx, used.ID, "d-used", now); spent || !errors.Is(err, token.ErrUsedUp) {
		t.Errorf("used up: %v, %v", spent, err)
	}
	// A refused spend records nothing: the delivery can spend another
	// token later.
	fresh, _ := newRecord(1)
	add(t, db, fresh)
	if spent, err := db.Spend(ctx, fresh.ID, "d-used", now); !spent || err != nil {
		t.Errorf("delivery after a refusal = %v, %v", spent, err)
	}
}

// spendConcurrently spends the token from n goroutines, each with its own
// delivery id, all released at once, and counts the outcomes.
func spendConcurrently(t *testing.T, dbs []*DB, id string, n int) (spent, usedUp int) {
	t.Helper()
	ctx := context.Background()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := dbs[i%len(dbs)].Spend(ctx, id, fmt.Sprintf("delivery-%d", i), time.Now())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case ok && err == nil:
				spent++
			case errors.Is(err, token.ErrUsedUp):
				usedUp++
			default:
				t.Errorf("Spend from goroutine %d = %v, %v", i, ok, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return spent, usedUp
}

func TestSpendConcurrentOneUse(t *testing.T) {
	t.Parallel()
	db, _ := open(t)
	r, _ := newRecord(1)
	add(t, db, r)
	spent, usedUp := spendConcurrently(t, []*DB{db}, r.ID, 16)
	if spent != 1 || usedUp != 15 {
		t.Errorf("16 concurrent spends of a one-use token: %d spent, %d used up; want 1, 15", spent, usedUp)
	}
	if got, _ := db.TokenByID(context.Background(), r.ID); got.UsesSpent != 1 {
		t.Errorf("UsesSpent = %d", got.UsesSpent)
	}
}

func TestSpendConcurrentThreeUses(t *testing.T) {
	t.Parallel()
	db, _ := open(t)
	r, _ := newRecord(3)
	add(t, db, r)
	spent, usedUp := spendConcurrently(t, []*DB{db}, r.ID, 10)
	if spent != 3 || usedUp != 7 {
		t.Errorf("10 concurrent spends of a 3-use token: %d spent, %d used up; want 3, 7", spent, usedUp)
	}
	if got, _ := db.TokenByID(context.Background(), r.ID); got.UsesSpent != 3 {
		t.Errorf("UsesSpent = %d", got.UsesSpent)
	}
}

// TestTwoHandles is the daemon and a `restrictedmail token` command: two
// *DB on one file, writing at the same time. The busy timeout makes each
// wait for the other instead of failing with SQLITE_BUSY.
func TestTwoHandles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	daemon, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	cli, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	r, _ := newRecord(5)
	add(t, daemon, r)
	spent, usedUp := spendConcurrently(t, []*DB{daemon, cli}, r.ID, 12)
	if spent != 5 || usedUp != 7 {
		t.Errorf("12 spends through two handles of a 5-use token: %d spent, %d used up", spent, usedUp)
	}

	const perHandle = 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*perHandle)
	for h, db := range []*DB{daemon, cli} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perHandle; i++ {
				rec, _ := newRecord(1)
				if err := db.AddToken(ctx, rec); err != nil {
					errs <- fmt.Errorf("handle %d AddToken: %w", h, err)
					continue
				}
				if _, err := db.Spend(ctx, rec.ID, "d-"+rec.ID, time.Now()); err != nil {
					errs <- fmt.Errorf("handle %d Spend: %w", h, err)
				}
				if i%5 == 0 {
					if err := db.RevokeToken(ctx, rec.ID); err != nil {
						errs <- fmt.Errorf("handle %d RevokeToken: %w", h, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, db := range []*DB{daemon, cli} {
		recs, err := db.Tokens(ctx)
		if err != nil || len(recs) != 1+2*perHandle {
			t.Errorf("Tokens = %d records, %v; want %d", len(recs), err, 1+2*perHandle)
		}
	}
}
