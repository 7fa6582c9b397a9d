package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
)

// OpenReadOnly opens an existing store that this process can only read:
// SQLite refuses every write on the connection, so a caller that must not
// change anything — the dry run of `restrictedmail test`, which judges a
// message without spending its token — cannot do so by mistake. The store
// is neither created nor migrated; a schema older or newer than this
// binary's is an error. A daemon may have the store open at the same time
// (WAL readers do not block the writer). It uses the default Options.
func OpenReadOnly(ctx context.Context, path string) (*DB, error) {
	return OpenReadOnlyWith(ctx, path, Options{})
}

// OpenReadOnlyWith is OpenReadOnly with options.
func OpenReadOnlyWith(ctx context.Context, path string, o Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("opening store: no path configured")
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening store %s read-only: %w", path, err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.busyTimeoutMillis()))
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening store %s read-only: %w", path, err)
	}
	s := &DB{db: db}
	v, err := s.SchemaVersion(ctx)
	if err == nil && v != len(migrations) {
		err = fmt.Errorf("schema version %d, this restrictedmail needs %d (start `serve` once to migrate)", v, len(migrations))
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s read-only: %w", path, err)
	}
	return s, nil
}
