package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/pgtest"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://rm:s3cret@db.example.org/rm?sslmode=verify-full": "postgres://rm:xxxxx@db.example.org/rm?sslmode=verify-full",
		"postgres://rm@db/rm?password=s3cret&sslmode=require":        "postgres://rm@db/rm?password=xxxxx&sslmode=require",
		"postgres://rm@db/rm": "postgres://rm@db/rm",
	} {
		if got := store.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPostgresErrorsHideThePassword: a database that cannot be reached
// fails the open at once, and the error names the URL without its
// password.
func TestPostgresErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	for _, url := range []string{
		"postgres://rm:s3cret@127.0.0.1:1/rm?sslmode=disable",
		"postgres://rm@127.0.0.1:1/rm?sslmode=disable&password=s3cret",
		"postgres://rm:s3cret@127.0.0.1:1/rm?sslmode=nonsense",
	} {
		_, err := store.OpenPostgres(context.Background(), store.PostgresOptions{URL: url, ConnectTimeout: time.Second})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("OpenPostgres(%s) = %v; want an error without the password", store.RedactURL(url), err)
		}
	}
	_, err := store.OpenPostgres(context.Background(), store.PostgresOptions{URL: "postgres://rm@127.0.0.1:1/rm", PasswordFile: "/nonexistent/pw"})
	if err == nil || !strings.Contains(err.Error(), "password file") {
		t.Errorf("missing password file: %v", err)
	}
}

// TestPostgresReadOnly: `restrictedmail test` opens the store read-only:
// the server refuses writes, and a database without the schema is refused.
func TestPostgresReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := pgtest.Shared(t)
	url := c.NewDB(t)
	if _, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: url, ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "schema version 0") {
		t.Errorf("read-only open of an empty database: %v", err)
	}
	rw, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	tok := token.Generate()
	if err := rw.AddToken(ctx, token.Record{ID: token.NewID(), Hash: token.HashOf(tok), List: "board@example.org", Created: time.Now(), UsesAllowed: 1}); err != nil {
		t.Fatal(err)
	}
	ro, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: url, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	r, err := ro.TokenByHash(ctx, token.HashOf(tok))
	if err != nil {
		t.Fatalf("reading read-only: %v", err)
	}
	if _, err := ro.Spend(ctx, r.ID, "d1", time.Now()); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("spending read-only: %v; want the server's refusal", err)
	}
	if got, _ := rw.TokenByID(ctx, r.ID); got.UsesSpent != 0 {
		t.Error("the read-only store spent the token")
	}
}

// TestPostgresRestartedUnderThePool: after PostgreSQL restarted, every
// pooled connection is dead; a token lookup (the milter's) still succeeds
// at the first call, on a new connection, and writes work again.
func TestPostgresRestartedUnderThePool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := pgtest.New(t) // its own cluster: this test restarts it
	db, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: c.NewDB(t), MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tok := token.Generate()
	rec := token.Record{ID: token.NewID(), Hash: token.HashOf(tok), List: "board@example.org", Created: time.Now(), UsesAllowed: 1}
	if err := db.AddToken(ctx, rec); err != nil {
		t.Fatal(err)
	}
	// Fill the pool: four lookups at once hold four connections.
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := db.TokenByHash(ctx, rec.Hash)
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.TokenByHash(ctx, rec.Hash); err == nil {
		t.Fatal("a lookup succeeded with PostgreSQL stopped")
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := db.TokenByHash(ctx, rec.Hash); err != nil {
			t.Fatalf("lookup %d after the restart: %v", i, err)
		}
	}
	if spent, err := db.Spend(ctx, rec.ID, "d1", time.Now()); err != nil || !spent {
		t.Errorf("spend after the restart: %v, %v", spent, err)
	}
}

// TestPostgresRestartedUnderTransactions: the same for transactions (the
// LMTP endpoint's reads and spends): the first BEGIN after a restart
// succeeds on a new connection.
func TestPostgresRestartedUnderTransactions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := pgtest.New(t)
	db, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: c.NewDB(t), MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rec := token.Record{ID: token.NewID(), Hash: token.HashOf(token.Generate()), List: "board@example.org", Created: time.Now(), UsesAllowed: 5}
	if err := db.AddToken(ctx, rec); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := db.Spend(ctx, rec.ID, fmt.Sprint("before-", i), time.Now())
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DeliveryCounts(ctx, "none"); err != nil {
		t.Errorf("read transaction after the restart: %v", err)
	}
	if spent, err := db.Spend(ctx, rec.ID, "after", time.Now()); err != nil || !spent {
		t.Errorf("spend after the restart: %v, %v", spent, err)
	}
}
