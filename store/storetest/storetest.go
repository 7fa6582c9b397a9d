// Package storetest is the store's conformance suite: one set of tests
// that every backend (SQLite, PostgreSQL) must pass, the way
// riverqueue/river and dex test their drivers. The backends differ in how
// they lock (SQLite serialises writers, PostgreSQL runs READ COMMITTED
// transactions side by side), so the concurrency tests run several
// goroutines and two handles on one database — two hosts.
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

// Backend is how the suite gets databases.
type Backend struct {
	// NewDB returns the address of a fresh, empty database.
	NewDB func(t *testing.T) string
	// Open opens (creating and migrating) the database at addr. Each call
	// is another handle: another host, for the concurrency tests.
	Open func(ctx context.Context, addr string) (*store.DB, error)
	// SetSchemaVersion writes schema version v into the database at addr
	// (closed), as a newer restrictedmail would have.
	SetSchemaVersion func(t *testing.T, addr string, v int)
}

// Run runs the suite against b.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"Tokens", testTokens},
		{"IssueRekeyRecipients", testIssueRekeyRecipients},
		{"IdempotencyAcrossHosts", testIdempotencyAcrossHosts},
		{"SpendIdempotentAndRefusals", testSpend},
		{"SpendOneUseConcurrent", func(t *testing.T, b Backend) { testSpendConcurrent(t, b, 1, 1) }},
		{"SpendThreeUsesConcurrent", func(t *testing.T, b Backend) { testSpendConcurrent(t, b, 3, 1) }},
		{"SpendOneUseTwoHosts", func(t *testing.T, b Backend) { testSpendConcurrent(t, b, 1, 2) }},
		{"SpendThreeUsesTwoHosts", func(t *testing.T, b Backend) { testSpendConcurrent(t, b, 3, 2) }},
		{"SameDeliveryTwoHosts", testSameDeliveryTwoHosts},
		{"LeaseLifecycleTwoHosts", testLeaseLifecycle},
		{"LeaseTakeOverRace", testLeaseTakeOverRace},
		{"DuplicateByMessageID", testDuplicateByMessageID},
		{"ConcurrentBeginOnTwoHosts", testConcurrentBeginOnTwoHosts},
		{"BounceTransitions", testBounceTransitions},
		{"ReportQueueTwoHosts", testReportQueue},
		{"SignInLinkOnceTwoHosts", testSignInLinkOnceTwoHosts},
		{"WebSessionsTwoHosts", testWebSessions},
		{"Revoke", testRevoke},
		{"Journal", testJournal},
		{"Listing", testListing},
		{"APIKeys", testAPIKeys},
		{"Webhooks", testWebhooks},
		{"WebhookClaimsTwoHosts", testWebhookClaimsTwoHosts},
		{"Stats", testStats},
		{"SchemaVersion", testSchemaVersion},
		{"ConcurrentOpenOfNewStore", testConcurrentOpen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, b)
		})
	}
}

// open opens n handles on one fresh database.
func open(t *testing.T, b Backend, n int) []*store.DB {
	t.Helper()
	addr := b.NewDB(t)
	dbs := make([]*store.DB, n)
	for i := range dbs {
		db, err := b.Open(context.Background(), addr)
		if err != nil {
			t.Fatalf("opening handle %d: %v", i, err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	return dbs
}

func open1(t *testing.T, b Backend) *store.DB { return open(t, b, 1)[0] }

// record returns a fresh token's record and the token.
func record(list string, uses int) (token.Record, string) {
	tok := token.Generate()
	return token.Record{
		ID:          token.NewID(),
		Hash:        token.HashOf(tok),
		List:        list,
		Created:     time.Now().UTC().Truncate(time.Second),
		UsesAllowed: uses,
	}, tok
}

func add(t *testing.T, db *store.DB, r token.Record) {
	t.Helper()
	if err := db.AddToken(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func testTokens(t *testing.T, b Backend) {
	ctx := context.Background()
	db := open1(t, b)
	r, tok := record("board@example.org", 2)
	r.Sender, r.Recipients, r.HideSender, r.Owner, r.ExternalRef = "chair@example.org", []string{"a@example.org", "b@example.org"}, true, "portal", "ref-1"
	r.Expires = r.Created.Add(time.Hour)
	add(t, db, r)
	got, err := db.TokenByHash(ctx, token.HashOf(tok))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != r.ID || got.Sender != r.Sender || len(got.Recipients) != 2 || !got.HideSender || got.Owner != "portal" ||
		got.ExternalRef != "ref-1" || !got.Expires.Equal(r.Expires) || !got.Created.Equal(r.Created) || got.UsesAllowed != 2 || got.Revoked {
		t.Errorf("TokenByHash = %+v, want %+v", got, r)
	}
	if byID, err := db.TokenByID(ctx, r.ID); err != nil || byID.Hash != r.Hash {
		t.Errorf("TokenByID = %+v, %v", byID, err)
	}
	if _, err := db.TokenByHash(ctx, token.HashOf(token.Generate())); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("unknown hash: %v, want ErrNotFound", err)
	}
	if _, err := db.TokenByID(ctx, "nosuchid00"); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
	dup, _ := record("board@example.org", 1)
	dup.Hash = r.Hash
	if err := db.AddToken(ctx, dup); err == nil {
		t.Error("a second token with the same hash was stored")
	}
	r2, _ := record("other@example.org", 1)
	r2.Created = r.Created.Add(time.Second)
	add(t, db, r2)
	all, err := db.Tokens(ctx)
	if err != nil || len(all) != 2 || all[0].ID != r.ID || all[1].ID != r2.ID {
		t.Errorf("Tokens = %v, %v; want the two, oldest first", all, err)
	}
}

func testIssueRekeyRecipients(t *testing.T, b Backend) {
	ctx := context.Background()
	db := open1(t, b)
	now := time.Now()
	r, _ := record("board@example.org", 1)
	idem := &store.Idempotency{Scope: "key1", Key: "k", Fingerprint: [32]byte{1}}
	rec, replayed, err := db.IssueToken(ctx, r, idem, now)
	if err != nil || replayed || rec.ID != r.ID {
		t.Fatalf("IssueToken = %v, %v, %v", rec.ID, replayed, err)
	}
	other, _ := record("board@example.org", 1)
	rec, replayed, err = db.IssueToken(ctx, other, idem, now)
	if err != nil || !replayed || rec.ID != r.ID {
		t.Errorf("replayed IssueToken = %v, %v, %v; want the first token", rec.ID, replayed, err)
	}
	if _, err := db.TokenByID(ctx, other.ID); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("a replay stored its token: %v", err)
	}
	diff := *idem
	diff.Fingerprint[0] = 2
	if _, _, err := db.IssueToken(ctx, other, &diff, now); !errors.Is(err, store.ErrIdempotencyMismatch) {
		t.Errorf("different request under the key: %v, want ErrIdempotencyMismatch", err)
	}

	newTok := token.Generate()
	rec, err = db.RekeyToken(ctx, r.ID, token.HashOf(newTok), now)
	if err != nil || rec.Hash != token.HashOf(newTok) {
		t.Fatalf("RekeyToken = %v, %v", rec.Hash, err)
	}
	if _, err := db.TokenByHash(ctx, r.Hash); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("old secret after re-key: %v, want ErrNotFound", err)
	}
	rec, err = db.SetTokenRecipients(ctx, r.ID, []string{"x@example.org", "y@example.org"}, now)
	if err != nil || len(rec.Recipients) != 2 || rec.Recipients[1] != "y@example.org" {
		t.Errorf("SetTokenRecipients = %v, %v", rec.Recipients, err)
	}
	if _, err := db.Spend(ctx, r.ID, "d1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RekeyToken(ctx, r.ID, token.HashOf(token.Generate()), now); !errors.Is(err, token.ErrUsedUp) {
		t.Errorf("re-keying a used token: %v, want ErrUsedUp", err)
	}
	if _, err := db.SetTokenRecipients(ctx, "nosuchid00", nil, now); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("recipients of an unknown token: %v, want ErrNotFound", err)
	}
}

// testIdempotencyAcrossHosts issues under one key from two hosts at once:
// one token is stored, and both get it.
func testIdempotencyAcrossHosts(t *testing.T, b Backend) {
	ctx := context.Background()
	dbs := open(t, b, 2)
	idem := &store.Idempotency{Scope: "key1", Key: "same", Fingerprint: [32]byte{7}}
	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := record("board@example.org", 1)
			<-start
			rec, _, err := dbs[i%2].IssueToken(ctx, r, idem, time.Now())
			ids[i], errs[i] = rec.ID, err
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Errorf("issue %d = %s, %v; want %s", i, ids[i], errs[i], ids[0])
		}
	}
	if all, _ := dbs[0].Tokens(ctx); len(all) != 1 {
		t.Errorf("%d tokens stored under one idempotency key, want 1", len(all))
	}
}

func testSpend(t *testing.T, b Backend) {
	ctx := context.Background()
	db := open1(t, b)
	now := time.Now()
	r, _ := record("board@example.org", 2)
	add(t, db, r)
	for i := range 3 {
		spent, err := db.Spend(ctx, r.ID, "A", now)
		if err != nil || spent != (i == 0) {
			t.Fatalf("Spend A #%d = %v, %v", i, spent, err)
		}
	}
	if spent, err := db.Spend(ctx, r.ID, "B", now); !spent || err != nil {
		t.Fatalf("Spend B = %v, %v", spent, err)
	}
	if spent, err := db.Spend(ctx, r.ID, "C", now); spent || !errors.Is(err, token.ErrUsedUp) {
		t.Errorf("Spend C = %v, %v; want ErrUsedUp", spent, err)
	}
	if spent, err := db.Spend(ctx, r.ID, "B", now); spent || err != nil {
		t.Errorf("Spend B again on a used token = %v, %v; want false, nil", spent, err)
	}
	if got, _ := db.TokenByID(ctx, r.ID); got.UsesSpent != 2 {
		t.Errorf("UsesSpent = %d, want 2", got.UsesSpent)
	}
	other, _ := record("board@example.org", 1)
	add(t, db, other)
	if _, err := db.Spend(ctx, other.ID, "A", now); err == nil {
		t.Error("one delivery spent two tokens")
	}
	if got, _ := db.TokenByID(ctx, other.ID); got.UsesSpent != 0 {
		t.Error("the refused spend changed the other token")
	}
	expired, _ := record("board@example.org", 1)
	expired.Expires = now.Add(-time.Minute)
	add(t, db, expired)
	if _, err := db.Spend(ctx, expired.ID, "E", now); !errors.Is(err, token.ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	revoked, _ := record("board@example.org", 1)
	add(t, db, revoked)
	if err := db.RevokeToken(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Spend(ctx, revoked.ID, "R", now); !errors.Is(err, token.ErrRevoked) {
		t.Errorf("revoked: %v", err)
	}
	if _, err := db.Spend(ctx, "nosuchid00", "N", now); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	// A refusal spends nothing and leaves the delivery free.
	fresh, _ := record("board@example.org", 1)
	add(t, db, fresh)
	if spent, err := db.Spend(ctx, fresh.ID, "E", now); !spent || err != nil {
		t.Errorf("delivery after a refusal = %v, %v", spent, err)
	}
}

// testSpendConcurrent spends a token of uses uses from 12 goroutines, each
// its own delivery, spread over hosts handles.
func testSpendConcurrent(t *testing.T, b Backend, uses, hosts int) {
	ctx := context.Background()
	dbs := open(t, b, hosts)
	r, _ := record("board@example.org", uses)
	add(t, dbs[0], r)
	const n = 12
	var (
		wg            sync.WaitGroup
		mu            sync.Mutex
		spent, usedUp int
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := dbs[i%hosts].Spend(ctx, r.ID, fmt.Sprintf("delivery-%d", i), time.Now())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case ok && err == nil:
				spent++
			case errors.Is(err, token.ErrUsedUp):
				usedUp++
			default:
				t.Errorf("Spend %d = %v, %v", i, ok, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if spent != uses || usedUp != n-uses {
		t.Errorf("%d spent, %d used up; want %d and %d", spent, usedUp, uses, n-uses)
	}
	if got, _ := dbs[0].TokenByID(ctx, r.ID); got.UsesSpent != uses {
		t.Errorf("UsesSpent = %d, want %d", got.UsesSpent, uses)
	}
}

// testSameDeliveryTwoHosts begins one delivery from two hosts at once
// (Postfix handing the same message to both): one spend, one record.
func testSameDeliveryTwoHosts(t *testing.T, b Backend) {
	ctx := context.Background()
	dbs := open(t, b, 2)
	r, _ := record("board@example.org", 5)
	add(t, dbs[0], r)
	const n = 6
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		existing int
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			d := store.Delivery{ID: "same", List: r.List, TokenID: r.ID, Sender: "s@example.net", Created: time.Now()}
			rec, ex, err := dbs[i%2].BeginDelivery(ctx, d, []string{"a@example.org", "b@example.org"})
			mu.Lock()
			defer mu.Unlock()
			if err != nil || rec.ID != "same" {
				t.Errorf("BeginDelivery %d = %v, %v", i, rec.ID, err)
			}
			if ex {
				existing++
			}
		}()
	}
	close(start)
	wg.Wait()
	if existing != n-1 {
		t.Errorf("%d of %d calls found the delivery existing, want %d", existing, n, n-1)
	}
	if got, _ := dbs[1].TokenByID(ctx, r.ID); got.UsesSpent != 1 {
		t.Errorf("UsesSpent = %d, want 1", got.UsesSpent)
	}
}

func testRevoke(t *testing.T, b Backend) {
	ctx := context.Background()
	db := open1(t, b)
	r, tok := record("board@example.org", 1)
	add(t, db, r)
	if err := db.RevokeToken(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := db.TokenByHash(ctx, token.HashOf(tok)); err != nil || !got.Revoked {
		t.Errorf("after revoke: %+v, %v", got, err)
	}
	if err := db.RevokeToken(ctx, "nosuchid00"); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("revoking an unknown token: %v", err)
	}
}

// testConcurrentOpen opens a new database from four hosts at once: one
// migrates, the others wait and find the schema current.
func testConcurrentOpen(t *testing.T, b Backend) {
	addr := b.NewDB(t)
	const n = 4
	dbs := make([]*store.DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			dbs[i], errs[i] = b.Open(context.Background(), addr)
		}()
	}
	close(start)
	wg.Wait()
	versions := map[int]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("open %d: %v", i, errs[i])
			continue
		}
		v, err := dbs[i].SchemaVersion(context.Background())
		if err != nil {
			t.Error(err)
		}
		versions[v] = true
		dbs[i].Close()
	}
	if len(versions) != 1 {
		t.Errorf("schema versions after concurrent opens: %v", versions)
	}
}
