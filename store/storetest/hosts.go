package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// twoHosts opens two handles on one new store, as two restrictedmail
// processes (two hosts) sharing it.
func twoHosts(t *testing.T, bk Backend) (a, b *store.DB) {
	t.Helper()
	dbs := open(t, bk, 2)
	return dbs[0], dbs[1]
}

func begin(t *testing.T, db *store.DB, d store.Delivery, rcpts ...string) (store.Delivery, bool) {
	t.Helper()
	rec, existing, err := db.BeginDelivery(context.Background(), d, rcpts)
	if err != nil {
		t.Fatal(err)
	}
	return rec, existing
}

// testLeaseLifecycle: a new delivery holds the lease it was begun with;
// another owner cannot take it while it is live, takes it over once it has
// expired, and the first owner's renewal then fails; a released lease is
// free at once; a complete delivery is nobody's to take.
func testLeaseLifecycle(t *testing.T, bk Backend) {
	ctx := context.Background()
	a, b := twoHosts(t, bk)
	r, _ := record("board@example.org", 1)
	add(t, a, r)
	now := time.Now().Truncate(time.Second)
	d := store.Delivery{ID: "d1", List: r.List, TokenID: r.ID, Sender: "alice@example.net", Created: now,
		LeaseOwner: "host-a", LeaseUntil: now.Add(time.Minute)}
	if rec, existing := begin(t, a, d, "m1@example.com", "m2@example.com"); existing || rec.LeaseOwner != "host-a" {
		t.Fatalf("BeginDelivery: existing %v, lease owner %q", existing, rec.LeaseOwner)
	}
	got, err := b.Delivery(ctx, "d1")
	if err != nil || got.LeaseOwner != "host-a" || !got.LeaseUntil.Equal(now.Add(time.Minute)) {
		t.Fatalf("Delivery seen by the other host: %+v, %v", got, err)
	}

	acquire := func(db *store.DB, owner string, at time.Time) bool {
		t.Helper()
		ok, err := db.AcquireLease(ctx, "d1", owner, at, at.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if acquire(b, "host-b", now.Add(59*time.Second)) {
		t.Fatal("host-b took a live lease")
	}
	if !acquire(a, "host-a", now.Add(30*time.Second)) {
		t.Fatal("host-a could not take its own lease again")
	}
	if err := a.RenewLease(ctx, "d1", "host-a", now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if acquire(b, "host-b", now.Add(90*time.Second)) {
		t.Fatal("host-b took a lease that was renewed")
	}
	// host-a dies: its lease runs out, host-b takes the delivery over.
	takeover := now.Add(2*time.Minute + time.Second)
	if !acquire(b, "host-b", takeover) {
		t.Fatal("host-b could not take over an expired lease")
	}
	if err := a.RenewLease(ctx, "d1", "host-a", takeover.Add(time.Minute)); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("host-a renewing a lease taken over: %v, want ErrLeaseLost", err)
	}
	if err := a.ReleaseLease(ctx, "d1", "host-a"); err != nil { // not its own: nothing happens
		t.Fatal(err)
	}
	if got, _ := a.Delivery(ctx, "d1"); got.LeaseOwner != "host-b" {
		t.Fatalf("a release by the former owner freed host-b's lease: owner %q", got.LeaseOwner)
	}
	if err := b.ReleaseLease(ctx, "d1", "host-b"); err != nil {
		t.Fatal(err)
	}
	if !acquire(a, "host-c", takeover) {
		t.Fatal("a released lease could not be taken")
	}
	if _, err := a.FinishDelivery(ctx, "d1", "", takeover); err != nil {
		t.Fatal(err)
	}
	if acquire(b, "host-b", takeover.Add(time.Hour)) {
		t.Fatal("the lease of a complete delivery was taken")
	}
	if ok, err := a.AcquireLease(ctx, "nosuch", "host-a", now, now.Add(time.Minute)); ok || err != nil {
		t.Fatalf("lease of an unknown delivery: %v, %v", ok, err)
	}
}

// testDuplicateByMessageID: the same message (list, token, Message-ID)
// begun under another delivery id — another MX host's bytes — is the
// delivery begun first, spent once; without a Message-ID, or with another
// token, it is a delivery of its own.
func testDuplicateByMessageID(t *testing.T, bk Backend) {
	ctx := context.Background()
	a, b := twoHosts(t, bk)
	r, _ := record("board@example.org", 3)
	add(t, a, r)
	now := time.Now()
	d := store.Delivery{ID: "via-mx1", List: r.List, TokenID: r.ID, Sender: "alice@example.net", Created: now, MessageID: "<m1@example.net>"}
	begin(t, a, d, "m1@example.com")
	d2 := d
	d2.ID = "via-mx2"
	rec, existing := begin(t, b, d2, "m1@example.com")
	if !existing || rec.ID != "via-mx1" || rec.MessageID != "<m1@example.net>" {
		t.Fatalf("the same message through the other MX: existing %v, delivery %q", existing, rec.ID)
	}
	if got, err := b.DeliveryByMessage(ctx, r.List, r.ID, "<m1@example.net>"); err != nil || got.ID != "via-mx1" {
		t.Fatalf("DeliveryByMessage = %q, %v", got.ID, err)
	}
	if _, err := b.Delivery(ctx, "via-mx2"); !errors.Is(err, store.ErrNoDelivery) {
		t.Fatalf("the duplicate was recorded: %v", err)
	}
	if rec, _ := a.TokenByID(ctx, r.ID); rec.UsesSpent != 1 {
		t.Fatalf("uses spent %d, want 1", rec.UsesSpent)
	}

	// Without a Message-ID a message is known by its bytes only.
	for _, id := range []string{"no-mid-1", "no-mid-2"} {
		d := store.Delivery{ID: id, List: r.List, TokenID: r.ID, Sender: "alice@example.net", Created: now}
		if _, existing := begin(t, a, d, "m1@example.com"); existing {
			t.Fatalf("%s without a Message-ID was taken for another delivery", id)
		}
	}
	if _, err := a.DeliveryByMessage(ctx, r.List, r.ID, ""); !errors.Is(err, store.ErrNoDelivery) {
		t.Fatalf("DeliveryByMessage(\"\") = %v, want ErrNoDelivery", err)
	}
	if rec, _ := a.TokenByID(ctx, r.ID); rec.UsesSpent != 3 {
		t.Fatalf("uses spent %d, want 3", rec.UsesSpent)
	}
}

// testConcurrentBeginOnTwoHosts: the same message begun at once through
// both hosts, many times, under as many delivery ids, is one delivery and
// one use of its token; ten different messages with a single-use token
// begun at once on both hosts spend it exactly once.
func testConcurrentBeginOnTwoHosts(t *testing.T, bk Backend) {
	ctx := context.Background()
	a, b := twoHosts(t, bk)
	hosts := []*store.DB{a, b}
	r3, _ := record("board@example.org", 3)
	add(t, a, r3)
	r1, _ := record("board@example.org", 1)
	add(t, a, r1)
	now := time.Now()

	const n = 10
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firsts   []string
		ids      = map[string]bool{}
		spenders []string
		refused  int
	)
	for i := range n {
		wg.Go(func() {
			db := hosts[i%2]
			d := store.Delivery{ID: fmt.Sprintf("same-%d", i), List: r3.List, TokenID: r3.ID, Sender: "alice@example.net", Created: now, MessageID: "<same@example.net>"}
			rec, existing, err := db.BeginDelivery(ctx, d, []string{"m1@example.com"})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("begin %d: %v", i, err)
				return
			}
			ids[rec.ID] = true
			if !existing {
				firsts = append(firsts, rec.ID)
			}
		})
		wg.Go(func() {
			db := hosts[i%2]
			d := store.Delivery{ID: fmt.Sprintf("other-%d", i), List: r1.List, TokenID: r1.ID, Sender: "alice@example.net", Created: now, MessageID: fmt.Sprintf("<other-%d@example.net>", i)}
			_, _, err := db.BeginDelivery(ctx, d, []string{"m1@example.com"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				spenders = append(spenders, d.ID)
			case errors.Is(err, token.ErrUsedUp):
				refused++
			default:
				t.Errorf("begin %s: %v", d.ID, err)
			}
		})
	}
	wg.Wait()
	if len(firsts) != 1 || len(ids) != 1 {
		t.Errorf("one message begun %d times: %d began a delivery (%v), %d deliveries known", n, len(firsts), firsts, len(ids))
	}
	if rec, _ := a.TokenByID(ctx, r3.ID); rec.UsesSpent != 1 {
		t.Errorf("the three-use token: %d uses spent, want 1", rec.UsesSpent)
	}
	if len(spenders) != 1 || refused != n-1 {
		t.Errorf("a single-use token, %d messages at once: %d spent it (%v), %d refused", n, len(spenders), spenders, refused)
	}
	if rec, _ := b.TokenByID(ctx, r1.ID); rec.UsesSpent != 1 {
		t.Errorf("the single-use token: %d uses spent, want 1", rec.UsesSpent)
	}
}

// testLeaseTakeOverRace: the owner of a delivery died; its lease has run
// out, and eight processes on two hosts try to take the delivery over at
// once — exactly one gets it.
func testLeaseTakeOverRace(t *testing.T, bk Backend) {
	ctx := context.Background()
	a, b := twoHosts(t, bk)
	hosts := []*store.DB{a, b}
	r, _ := record("board@example.org", 1)
	add(t, a, r)
	now := time.Now().Truncate(time.Second)
	begin(t, a, store.Delivery{ID: "d1", List: r.List, TokenID: r.ID, Sender: "alice@example.net", Created: now,
		LeaseOwner: "dead", LeaseUntil: now.Add(time.Minute)}, "m1@example.com")
	later := now.Add(2 * time.Minute)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []string
	)
	for i := range 8 {
		wg.Go(func() {
			owner := fmt.Sprintf("host-%d/%d", i%2, i)
			ok, err := hosts[i%2].AcquireLease(ctx, "d1", owner, later, later.Add(time.Minute))
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				winners = append(winners, owner)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d processes took over one delivery (%v), want 1", len(winners), winners)
	}
	if d, err := b.Delivery(ctx, "d1"); err != nil || d.LeaseOwner != winners[0] {
		t.Errorf("lease owner %q, %v; want %s", d.LeaseOwner, err, winners[0])
	}
}
