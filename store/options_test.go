package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// busyTimeout reads the busy_timeout in force on a connection of db.
func busyTimeout(t *testing.T, db *DB) time.Duration {
	t.Helper()
	var ms int64
	if err := db.db.QueryRowContext(context.Background(), "PRAGMA busy_timeout").Scan(&ms); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ms) * time.Millisecond
}

// lockForWriting takes the write lock of the store at path from a
// connection of its own, as another process (`restrictedmail token`, a
// backup) would, and holds it until the test ends.
func lockForWriting(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := raw.Conn(ctx)
	if err == nil {
		_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	}
	if err != nil {
		raw.Close()
		t.Fatalf("locking the store: %v", err)
	}
	t.Cleanup(func() {
		conn.ExecContext(ctx, "ROLLBACK")
		conn.Close()
		raw.Close()
	})
}

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// TestOptionsBusyTimeout: the busy timeout is DefaultBusyTimeout unless
// Options.BusyTimeout sets it, on read-write and read-only handles.
func TestOptionsBusyTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	const short = 200 * time.Millisecond

	for _, c := range []struct {
		name string
		open func() (*DB, error)
		want time.Duration
	}{
		{"Open", func() (*DB, error) { return Open(ctx, path) }, DefaultBusyTimeout},
		{"OpenWith zero", func() (*DB, error) { return OpenWith(ctx, path, Options{}) }, DefaultBusyTimeout},
		{"OpenWith short", func() (*DB, error) { return OpenWith(ctx, path, Options{BusyTimeout: short}) }, short},
		{"OpenReadOnly", func() (*DB, error) { return OpenReadOnly(ctx, path) }, DefaultBusyTimeout},
		{"OpenReadOnlyWith short", func() (*DB, error) { return OpenReadOnlyWith(ctx, path, Options{BusyTimeout: short}) }, short},
	} {
		db, err := c.open()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := busyTimeout(t, db); got != c.want {
			t.Errorf("%s: busy_timeout %v, want %v", c.name, got, c.want)
		}
		db.Close()
	}
}

// TestShortBusyTimeoutGivesUp: with the write lock held elsewhere, a write
// through a store opened with a short BusyTimeout fails with SQLITE_BUSY
// (after that timeout, not the default 10 s) instead of waiting for the
// lock; reads still work (WAL).
func TestShortBusyTimeoutGivesUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := OpenWith(ctx, path, Options{BusyTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r, _ := newRecord(2)
	add(t, db, r)

	lockForWriting(t, path)

	r2, _ := newRecord(1)
	if err := db.AddToken(ctx, r2); !isBusy(err) {
		t.Errorf("AddToken with the store locked: %v, want SQLITE_BUSY", err)
	}
	// Spend takes the lock at BEGIN (IMMEDIATE), so it fails there.
	if spent, err := db.Spend(ctx, r.ID, "delivery-1", time.Now()); !isBusy(err) {
		t.Errorf("Spend with the store locked: %v, %v, want SQLITE_BUSY", spent, err)
	}
	if got, err := db.TokenByID(ctx, r.ID); err != nil || got.UsesSpent != 0 {
		t.Errorf("reading with the store locked: %+v, %v", got, err)
	}
}
