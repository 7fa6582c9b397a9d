package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/token"
)

// open opens a new store in a temporary directory and closes it when the
// test ends.
func open(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// newRecord returns a record for a fresh token, and the token.
func newRecord(uses int) (token.Record, string) {
	tok := token.Generate()
	return token.Record{
		ID:          token.NewID(),
		Hash:        token.HashOf(tok),
		List:        "board@example.org",
		Created:     time.Now().UTC().Truncate(time.Second),
		UsesAllowed: uses,
	}, tok
}

func add(t *testing.T, db *DB, r token.Record) {
	t.Helper()
	if err := db.AddToken(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "var", "lib", "restrictedmail")
	path := filepath.Join(dir, "state.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode %#o, want 0600", fi.Mode().Perm())
	}
	// The WAL and shared-memory files exist once written to, and take the
	// database's mode.
	r, _ := newRecord(1)
	add(t, db, r)
	for _, suffix := range []string{"-wal", "-shm"} {
		fi, err := os.Stat(path + suffix)
		if err != nil {
			t.Errorf("%s: %v", suffix, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %#o, want 0600", suffix, fi.Mode().Perm())
		}
	}
	if err := db.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	var mode string
	if err := db.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	if _, err := Open(context.Background(), ""); err == nil {
		t.Error("Open with no path succeeded")
	}
	// A directory where the database file should be.
	dir := t.TempDir()
	if _, err := Open(context.Background(), dir); err == nil {
		t.Error("Open of a directory succeeded")
	}
	// A file that is not a database.
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), junk); err == nil {
		t.Error("Open of a file that is not a database succeeded")
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "with space?#%20&x=1", "state.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	r, tok := newRecord(2)
	r.Sender = "alice@example.net"
	r.Expires = r.Created.Add(72 * time.Hour)
	r.Recipients = []string{"x@example.net", "y@example.com"}
	r.HideSender = true
	add(t, db, r)
	if _, err := db.Spend(ctx, r.ID, "delivery-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The data went to path itself, however odd its characters for a URI.
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("database file %s: %v", path, err)
	}
	if files, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*")); len(files) != 1 {
		t.Errorf("files beside the database after closing: %v", files)
	}
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.TokenByHash(ctx, token.HashOf(tok))
	if err != nil {
		t.Fatal(err)
	}
	r.UsesSpent = 1
	if !reflect.DeepEqual(got, r) {
		t.Errorf("after reopening:\ngot  %+v\nwant %+v", got, r)
	}
	// The spend was kept too: the same delivery spends nothing.
	if spent, err := db.Spend(ctx, r.ID, "delivery-1", time.Now()); spent || err != nil {
		t.Errorf("Spend of a recorded delivery after reopening = %v, %v", spent, err)
	}
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, len(migrations))
	}
}

func TestSchemaVersion(t *testing.T) {
	t.Parallel()
	db, _ := open(t)
	v, err := db.SchemaVersion(context.Background())
	if err != nil || v != len(migrations) || v == 0 {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, len(migrations))
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, path := open(t)
	newer := len(migrations) + 6
	if _, err := db.db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", newer)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := Open(ctx, path)
	if err == nil {
		t.Fatal("Open of a database with a newer schema succeeded")
	}
	for _, want := range []string{fmt.Sprintf("schema version %d", newer), "newer", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The database was left alone.
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var v int
	if err := raw.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != newer {
		t.Errorf("user_version = %d, %v; want %d", v, err, newer)
	}
}

func TestConcurrentOpenOfNewStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	const n = 4
	errs := make(chan error, n)
	dbs := make(chan *DB, n)
	for i := 0; i < n; i++ {
		go func() {
			db, err := Open(ctx, path)
			errs <- err
			dbs <- db
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
		if db := <-dbs; db != nil {
			defer db.Close()
			if v, _ := db.SchemaVersion(ctx); v != len(migrations) {
				t.Errorf("SchemaVersion = %d", v)
			}
		}
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	if recs, err := db.Tokens(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("Tokens of an empty store = %v, %v", recs, err)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var want []token.Record
	for i := 0; i < 3; i++ {
		r, _ := newRecord(i + 1)
		r.Created = base.Add(time.Duration(2-i) * time.Hour) // added newest first
		if i == 1 {
			r.Sender = "alice@example.net"
			r.Recipients = []string{"only@example.net"}
			r.Expires = base.Add(24 * time.Hour)
			r.HideSender = true
		}
		add(t, db, r)
		want = append([]token.Record{r}, want...)
	}
	got, err := db.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Tokens (oldest first):\ngot  %+v\nwant %+v", got, want)
	}
	for _, r := range want {
		byID, err := db.TokenByID(ctx, r.ID)
		if err != nil || !reflect.DeepEqual(byID, r) {
			t.Errorf("TokenByID(%s) = %+v, %v", r.ID, byID, err)
		}
		byHash, err := db.TokenByHash(ctx, r.Hash)
		if err != nil || !reflect.DeepEqual(byHash, r) {
			t.Errorf("TokenByHash(%s) = %+v, %v", r.ID, byHash, err)
		}
	}
}

func TestAddToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	r, tok := newRecord(1)
	add(t, db, r)
	// Looked up by the token in any case.
	if got, err := db.TokenByHash(ctx, token.HashOf(strings.ToUpper(tok))); err != nil || got.ID != r.ID {
		t.Errorf("TokenByHash(upper-case token) = %+v, %v", got, err)
	}
	dupID, _ := newRecord(1)
	dupID.ID = r.ID
	if err := db.AddToken(ctx, dupID); err == nil {
		t.Error("a second token with the same id was added")
	}
	dupHash, _ := newRecord(1)
	dupHash.Hash = r.Hash
	if err := db.AddToken(ctx, dupHash); err == nil {
		t.Error("a second token with the same hash was added")
	}
	zero, _ := newRecord(0)
	if err := db.AddToken(ctx, zero); err == nil || !strings.Contains(err.Error(), "uses") {
		t.Errorf("a token with 0 uses: err = %v", err)
	}
	if recs, _ := db.Tokens(ctx); len(recs) != 1 {
		t.Errorf("%d tokens stored, want 1", len(recs))
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	r, _ := newRecord(1)
	add(t, db, r)
	if _, err := db.TokenByHash(ctx, token.HashOf(token.Generate())); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("TokenByHash(unknown) err = %v", err)
	}
	if _, err := db.TokenByID(ctx, "nosuchid00"); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("TokenByID(unknown) err = %v", err)
	}
	if err := db.RevokeToken(ctx, "nosuchid00"); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("RevokeToken(unknown) err = %v", err)
	}
	if spent, err := db.Spend(ctx, "nosuchid00", "d1", time.Now()); spent || !errors.Is(err, token.ErrNotFound) {
		t.Errorf("Spend(unknown) = %v, %v", spent, err)
	}
}

func TestRevokeToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	r, tok := newRecord(3)
	other, _ := newRecord(1)
	add(t, db, r)
	add(t, db, other)
	if err := db.RevokeToken(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	got, err := db.TokenByHash(ctx, token.HashOf(tok))
	if err != nil || !got.Revoked {
		t.Errorf("after RevokeToken: %+v, %v", got, err)
	}
	if o, _ := db.TokenByID(ctx, other.ID); o.Revoked {
		t.Error("RevokeToken revoked another token")
	}
	// Revoking twice is fine.
	if err := db.RevokeToken(ctx, r.ID); err != nil {
		t.Errorf("second RevokeToken: %v", err)
	}
	if spent, err := db.Spend(ctx, r.ID, "d1", time.Now()); spent || !errors.Is(err, token.ErrRevoked) {
		t.Errorf("Spend of a revoked token = %v, %v", spent, err)
	}
}

// TestPlainTokenNeverStored reads every file of the database and looks for
// the token in any case: only its hash may be there.
func TestPlainTokenNeverStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, path := open(t)
	var toks []string
	for i := 0; i < 20; i++ {
		r, tok := newRecord(2)
		add(t, db, r)
		if _, err := db.Spend(ctx, r.ID, "delivery-"+r.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	check := func(when string) {
		files, _ := filepath.Glob(path + "*")
		if len(files) == 0 {
			t.Fatal("no database files")
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			lower := bytes.ToLower(data)
			for _, tok := range toks {
				if bytes.Contains(lower, []byte(tok)) {
					t.Errorf("%s: %s contains a plain token", when, filepath.Base(f))
				}
			}
			if when == "after close" && len(data) > 0 {
				h := token.HashOf(toks[0])
				if filepath.Base(f) == "state.db" && !bytes.Contains(data, h[:]) {
					t.Errorf("the hash of a token is not in %s", f)
				}
			}
		}
	}
	check("while open")
	db.Close()
	check("after close")
}
