package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openWebStore(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSignInLinkWorksOnceAndExpires(t *testing.T) {
	ctx := context.Background()
	db := openWebStore(t)
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
	for range 8 {
		wg.Go(func() {
			email, err := db.UseSignInLink(ctx, h, now.Add(time.Minute))
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
				if email != "sec@example.org" {
					t.Errorf("email %q", email)
				}
			} else if !errors.Is(err, ErrNoSignIn) {
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
	if _, err := db.UseSignInLink(ctx, h2, now.Add(15*time.Minute)); !errors.Is(err, ErrNoSignIn) {
		t.Fatalf("expired link: %v, want ErrNoSignIn", err)
	}
	if _, err := db.UseSignInLink(ctx, sha256.Sum256([]byte("unknown")), now); !errors.Is(err, ErrNoSignIn) {
		t.Fatalf("unknown link: %v", err)
	}
}

func TestWebSessions(t *testing.T) {
	ctx := context.Background()
	db := openWebStore(t)
	now := time.Unix(1_800_000_000, 0)
	h := sha256.Sum256([]byte("session"))
	if err := db.AddWebSession(ctx, h, "sec@example.org", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ws, err := db.WebSessionByHash(ctx, h, now.Add(time.Minute))
	if err != nil || ws.Email != "sec@example.org" || !ws.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("session %+v, %v", ws, err)
	}
	if _, err := db.WebSessionByHash(ctx, h, now.Add(time.Hour)); !errors.Is(err, ErrNoSignIn) {
		t.Fatalf("expired session: %v", err)
	}
	if err := db.DeleteWebSession(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := db.WebSessionByHash(ctx, h, now); !errors.Is(err, ErrNoSignIn) {
		t.Fatalf("signed-out session: %v", err)
	}
	// Pruning forgets what expired and keeps the rest.
	old, live := sha256.Sum256([]byte("old")), sha256.Sum256([]byte("live"))
	db.AddWebSession(ctx, old, "a@example.org", now, now.Add(time.Minute))
	db.AddWebSession(ctx, live, "b@example.org", now, now.Add(time.Hour))
	if err := db.PruneWeb(ctx, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	var n int
	db.db.QueryRow(`SELECT COUNT(*) FROM web_sessions`).Scan(&n)
	if n != 1 {
		t.Fatalf("%d sessions after pruning, want 1", n)
	}
}
