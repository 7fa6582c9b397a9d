package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
)

// testSignInLinkOnceTwoHosts: a sign-in link used at once through both
// hosts (two clicks, two browsers) signs in exactly once; an expired or
// unknown link signs nobody in.
func testSignInLinkOnceTwoHosts(t *testing.T, bk Backend) {
	ctx := context.Background()
	dbs := open(t, bk, 2)
	db := dbs[0]
	now := time.Unix(1_800_000_000, 0)
	h := sha256.Sum256([]byte("secret"))
	if err := db.AddSignInLink(ctx, h, "sec@example.org", now, now.Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Many racing uses: exactly one wins.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range 8 {
		wg.Go(func() {
			email, err := dbs[i%2].UseSignInLink(ctx, h, now.Add(time.Minute))
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
				if email != "sec@example.org" {
					t.Errorf("email %q", email)
				}
			} else if !errors.Is(err, store.ErrNoSignIn) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d uses of one link succeeded, want 1", wins)
	}
	h2 := sha256.Sum256([]byte("other"))
	if err := db.AddSignInLink(ctx, h2, "sec@example.org", now, now.Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UseSignInLink(ctx, h2, now.Add(15*time.Minute)); !errors.Is(err, store.ErrNoSignIn) {
		t.Fatalf("expired link: %v, want ErrNoSignIn", err)
	}
	if _, err := db.UseSignInLink(ctx, sha256.Sum256([]byte("unknown")), now); !errors.Is(err, store.ErrNoSignIn) {
		t.Fatalf("unknown link: %v", err)
	}
}

// testWebSessions: a session made on one host is found on the other
// until it expires or is signed out; pruning forgets only what expired.
func testWebSessions(t *testing.T, bk Backend) {
	ctx := context.Background()
	dbs := open(t, bk, 2)
	db, other := dbs[0], dbs[1]
	now := time.Unix(1_800_000_000, 0)
	h := sha256.Sum256([]byte("session"))
	if err := db.AddWebSession(ctx, h, "sec@example.org", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ws, err := other.WebSessionByHash(ctx, h, now.Add(time.Minute))
	if err != nil || ws.Email != "sec@example.org" || !ws.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("session %+v, %v", ws, err)
	}
	if _, err := db.WebSessionByHash(ctx, h, now.Add(time.Hour)); !errors.Is(err, store.ErrNoSignIn) {
		t.Fatalf("expired session: %v", err)
	}
	if err := db.DeleteWebSession(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := other.WebSessionByHash(ctx, h, now); !errors.Is(err, store.ErrNoSignIn) {
		t.Fatalf("signed-out session: %v", err)
	}
	// Pruning forgets what expired and keeps the rest.
	old, live := sha256.Sum256([]byte("old")), sha256.Sum256([]byte("live"))
	if err := db.AddWebSession(ctx, old, "a@example.org", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := db.AddWebSession(ctx, live, "b@example.org", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.PruneWeb(ctx, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Asked at a time both were live, only the one pruning kept answers.
	if _, err := other.WebSessionByHash(ctx, old, now); !errors.Is(err, store.ErrNoSignIn) {
		t.Errorf("a pruned session: %v", err)
	}
	if ws, err := other.WebSessionByHash(ctx, live, now); err != nil || ws.Email != "b@example.org" {
		t.Errorf("a live session after pruning: %+v, %v", ws, err)
	}
}
