package generation

import (
	"context"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/store"
)

// OpenStore opens the store [store] names: PostgreSQL when url is set,
// else SQLite at path. Errors name a PostgreSQL URL without its password.
func OpenStore(ctx context.Context, c config.Store) (*store.DB, error) {
	if c.URL != "" {
		return store.OpenPostgres(ctx, postgresOptions(c, false))
	}
	return store.Open(ctx, c.Path)
}

// OpenStoreReadOnly opens the store [store] names so that it refuses
// every write (the dry run of `restrictedmail test`).
func OpenStoreReadOnly(ctx context.Context, c config.Store) (*store.DB, error) {
	if c.URL != "" {
		return store.OpenPostgres(ctx, postgresOptions(c, true))
	}
	return store.OpenReadOnly(ctx, c.Path)
}

// StoreName is how logs name the store: its path, or its URL without the
// password.
func StoreName(c config.Store) string {
	if c.URL != "" {
		return store.RedactURL(c.URL)
	}
	return c.Path
}

func postgresOptions(c config.Store, readOnly bool) store.PostgresOptions {
	return store.PostgresOptions{
		URL:              c.URL,
		PasswordFile:     c.PasswordFile,
		MaxOpenConns:     c.MaxOpenConns,
		ConnectTimeout:   c.ConnectTimeout.D(),
		StatementTimeout: c.StatementTimeout.D(),
		ReadOnly:         readOnly,
	}
}
