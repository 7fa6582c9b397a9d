package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/restrictedmail/restrictedmail/internal/pgtest"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// sqliteBackend is the embedded store in a temporary directory.
func sqliteBackend() storetest.Backend {
	return storetest.Backend{
		NewDB: func(t *testing.T) string { return filepath.Join(t.TempDir(), "state.db") },
		Open:  store.Open,
		SetSchemaVersion: func(t *testing.T, path string, v int) {
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// postgresBackend is a database of its own per test in the test binary's
// private PostgreSQL cluster.
func postgresBackend(t *testing.T) storetest.Backend {
	c := pgtest.Shared(t)
	return storetest.Backend{
		NewDB: func(t *testing.T) string { return c.NewDB(t) },
		Open: func(ctx context.Context, url string) (*store.DB, error) {
			return store.OpenPostgres(ctx, store.PostgresOptions{URL: url})
		},
		SetSchemaVersion: func(t *testing.T, url string, v int) {
			db, err := sql.Open("pgx", url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec("UPDATE schema_version SET version = $1", v); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestConformanceSQLite(t *testing.T) { storetest.Run(t, sqliteBackend()) }

func TestConformancePostgres(t *testing.T) { storetest.Run(t, postgresBackend(t)) }
