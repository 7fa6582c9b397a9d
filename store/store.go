// Package store keeps restrictedmail's state — issued tokens (as hashes) and
// the delivery journal — in an embedded SQLite database (modernc.org/sqlite,
// no cgo).
//
// The database runs in WAL mode with synchronous=FULL: a message that the
// LMTP endpoint acknowledged must survive a crash, so every commit reaches
// the disk. Writes run in IMMEDIATE transactions and wait on a busy timeout,
// which makes the store safe for the milter and the LMTP endpoint in one
// process and for a `restrictedmail token` command run beside a live daemon.
//
// Several MX hosts share one PostgreSQL database instead (OpenPostgres,
// postgres.go): the same code and SQL run on both, which is why the SQL
// keeps to a portable subset (placeholders `?`; types TEXT, INTEGER, BLOB;
// ON CONFLICT; no PRAGMA outside the SQLite-only paths) and every state
// change is a conditional UPDATE.
//
// Consumers (policy, lmtp, milter) declare the narrow interfaces they need;
// *DB satisfies them.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// DefaultBusyTimeout is how long a writer waits for another to finish
// unless Options.BusyTimeout says otherwise.
const DefaultBusyTimeout = 10 * time.Second

// Options tune how a store is opened. The zero value is the default.
type Options struct {
	// BusyTimeout is how long a statement waits for a lock that another
	// connection or process holds before it fails with SQLITE_BUSY
	// ("database is locked"). Zero (or less) means DefaultBusyTimeout,
	// 10 s; tests that lock the store on purpose set it short.
	BusyTimeout time.Duration
}

// busyTimeoutMillis is the busy_timeout pragma's value for o.
func (o Options) busyTimeoutMillis() int64 {
	d := o.BusyTimeout
	if d <= 0 {
		d = DefaultBusyTimeout
	}
	// busy_timeout is in whole milliseconds, and 0 would turn it off.
	return max(d.Milliseconds(), 1)
}

// DB is an open store.
type DB struct {
	db *sql.DB
	// pg is true for PostgreSQL (postgres.go), false for SQLite.
	pg bool
	// issueMu queues this process's API writes (issue, re-key, recipients)
	// in Go rather than on SQLite's busy handler, whose sleeps (1 ms
	// growing to 100 ms) gave concurrent HTTP clients a p99 of some 90 ms
	// (bench scenario 6); other processes still meet the busy timeout.
	issueMu sync.Mutex
}

// Open opens (creating when missing) the database at path and brings its
// schema up to date, with the default Options. The file and its WAL are
// readable by the owner only: the journal names senders and recipients.
func Open(ctx context.Context, path string) (*DB, error) {
	return OpenWith(ctx, path, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, o Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("opening store: no path configured")
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("opening store: creating %s: %w", dir, err)
		}
	}
	// Create the file ourselves so that its mode is ours, not the umask's;
	// SQLite gives the -wal and -shm files the mode of the database file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	f.Close()

	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.busyTimeoutMillis()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	// The workload is appends and small indexed lookups; SQLite's default
	// 2 MiB page cache per connection only adds to the peak memory of a
	// large fan-out (measured: 100,000 recipients, 36 → 32 MiB RSS, same
	// speed).
	q.Add("_pragma", "cache_size(-512)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	s := &DB{db: db}
	if err := s.migrateSQLite(ctx, o); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	return s, nil
}

// migrateSQLite is migrate, tried again while SQLite answers busy for up
// to the busy timeout. Processes opening a new database at once race to
// switch it to WAL, and SQLite answers the losers with SQLITE_BUSY without
// calling the busy handler; once the winner is done, opening succeeds.
func (s *DB) migrateSQLite(ctx context.Context, o Options) error {
	deadline := time.Now().Add(time.Duration(o.busyTimeoutMillis()) * time.Millisecond)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := s.migrate(ctx)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// Close closes the database.
func (s *DB) Close() error { return s.db.Close() }

// Ping checks that the database answers; readiness checks use it.
func (s *DB) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("pinging store: %w", err)
	}
	return nil
}

// migrations are applied in order; the schema version is PRAGMA
// user_version, which SQLite changes atomically with the transaction
// (PostgreSQL: the table schema_version). Never edit a released migration:
// append a new one, written in the portable subset (see the package
// comment) so that pgDDL can translate it for PostgreSQL.
var migrations = []string{
	// 1: tokens and the spends that make spending idempotent per delivery.
	`CREATE TABLE tokens (
		id           TEXT PRIMARY KEY,
		hash         BLOB NOT NULL UNIQUE,
		list         TEXT NOT NULL,
		sender       TEXT NOT NULL DEFAULT '',
		created      INTEGER NOT NULL,
		expires      INTEGER NOT NULL DEFAULT 0,
		uses_allowed INTEGER NOT NULL CHECK (uses_allowed > 0),
		uses_spent   INTEGER NOT NULL DEFAULT 0,
		recipients   TEXT NOT NULL DEFAULT '',
		hide_sender  INTEGER NOT NULL DEFAULT 0,
		revoked      INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE spends (
		delivery_id TEXT PRIMARY KEY,
		token_id    TEXT NOT NULL REFERENCES tokens(id),
		spent       INTEGER NOT NULL
	);`,
	// 2: the delivery journal (journal.go).
	journalMigration,
	// 3: the HTTP API: token owner and reference, listing indexes,
	// idempotency keys, API keys, the webhook outbox (api.go, apikeys.go,
	// webhooks.go).
	apiMigration,
	// 4: leases and the Message-ID key for several hosts (lease.go).
	leaseMigration,
	// 5: bounce tags, bounce states, delivery reports (bounces.go).
	bouncesMigration,
	// 6: the web page: sign-in links and sessions (web.go).
	webMigration,
	// 7: webhook messages claimed by one sender, endpoints refreshed by
	// each host (webhooks.go).
	webhookClaimMigration,
}

func (s *DB) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateOne(ctx)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration in its own transaction, re-reading
// the version inside it so that two processes opening a new store at once
// do not both apply it.
func (s *DB) migrateOne(ctx context.Context) (done bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("starting migration: %w", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return false, fmt.Errorf("reading schema version: %w", err)
	}
	switch {
	case v > len(migrations):
		return false, fmt.Errorf("schema version %d is newer than this restrictedmail knows (%d); use the newer binary", v, len(migrations))
	case v == len(migrations):
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("applying migration %d: %w", v+1, err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
		return false, fmt.Errorf("recording schema version %d: %w", v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("committing migration %d: %w", v+1, err)
	}
	return false, nil
}

// SchemaVersion returns the schema version of the open database.
func (s *DB) SchemaVersion(ctx context.Context) (int, error) {
	if s.pg {
		var exists bool
		if err := s.db.QueryRowContext(ctx, `SELECT to_regclass('schema_version') IS NOT NULL`).Scan(&exists); err != nil || !exists {
			return 0, err
		}
		return pgVersion(ctx, s.db)
	}
	var v int
	err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}
