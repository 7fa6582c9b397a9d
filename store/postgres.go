package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL is the store shared by several MX hosts. It runs the same
// code as SQLite through database/sql: the connection rewrites the `?`
// placeholders the store's SQL is written with into PostgreSQL's `$n`
// (rebind), turns Go booleans into the 0/1 integers the schema keeps, and
// the migrations are translated from the portable subset they are written
// in (pgDDL). Every state change is a conditional UPDATE, so the store is
// correct under PostgreSQL's default READ COMMITTED isolation with several
// hosts writing at once.

// Defaults of PostgresOptions.
const (
	DefaultMaxOpenConns     = 10
	DefaultConnectTimeout   = 5 * time.Second
	DefaultStatementTimeout = 10 * time.Second
)

// PostgresOptions configure a PostgreSQL store. Zero values are the
// defaults.
type PostgresOptions struct {
	// URL is a libpq connection URL ("postgres://user@host/db?sslmode=...");
	// the PG* environment variables fill in what it leaves out, as for psql.
	URL string
	// PasswordFile, when set, holds the password (its first line).
	PasswordFile string
	// MaxOpenConns bounds the connections of this process.
	MaxOpenConns int
	// ConnectTimeout bounds opening one connection: with the database
	// unreachable, a store call fails after it rather than hanging.
	ConnectTimeout time.Duration
	// StatementTimeout is PostgreSQL's statement_timeout for every
	// statement (lock waits included).
	StatementTimeout time.Duration
	// ReadOnly opens the store read-only (default_transaction_read_only):
	// the server refuses every write, and the schema is not migrated.
	ReadOnly bool
}

func (o PostgresOptions) withDefaults() PostgresOptions {
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = DefaultMaxOpenConns
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = DefaultStatementTimeout
	}
	return o
}

// RedactURL returns u with its password (in the user info or the
// password parameter) replaced, for logs and errors.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable PostgreSQL URL)"
	}
	q := p.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		p.RawQuery = q.Encode()
	}
	return p.Redacted()
}

// OpenPostgres opens the PostgreSQL store o.URL names and, unless
// o.ReadOnly, brings its schema up to date.
func OpenPostgres(ctx context.Context, o PostgresOptions) (*DB, error) {
	o = o.withDefaults()
	name := RedactURL(o.URL)
	db, err := openPostgresDB(o)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", name, err)
	}
	s := &DB{db: db, pg: true}
	if o.ReadOnly {
		err = s.checkVersion(ctx)
	} else {
		err = s.migratePostgres(ctx)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s: %w", name, err)
	}
	return s, nil
}

func openPostgresDB(o PostgresOptions) (*sql.DB, error) {
	if o.URL == "" {
		return nil, errors.New("no URL configured")
	}
	cfg, err := pgx.ParseConfig(o.URL)
	if err != nil {
		// pgconn redacts the password in its parse errors.
		return nil, fmt.Errorf("parsing the URL: %w", err)
	}
	if o.PasswordFile != "" {
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("reading the password file: %w", err)
		}
		cfg.Password, _, _ = strings.Cut(string(b), "\n")
		cfg.Password = strings.TrimSuffix(cfg.Password, "\r")
	}
	cfg.ConnectTimeout = o.ConnectTimeout
	cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(o.StatementTimeout.Milliseconds(), 10)
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "restrictedmail"
	}
	if o.ReadOnly {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	db := sql.OpenDB(rebindConnector{stdlib.GetConnector(*cfg)})
	db.SetMaxOpenConns(o.MaxOpenConns)
	// Keep every connection: a reconnect costs a TLS handshake and an
	// authentication on the path of a milter verdict.
	db.SetMaxIdleConns(o.MaxOpenConns)
	// Connections are recycled now and then so that a fail-over or a
	// changed DNS name is followed.
	db.SetConnMaxLifetime(30 * time.Minute)
	return db, nil
}

// pgAdvisoryLock is the key of the advisory lock that serialises
// migrations between hosts starting at once ("rmschema" in ASCII).
const pgAdvisoryLock = 0x726d736368656d61

// migratePostgres applies every pending migration in one transaction under
// a transaction-level advisory lock: a second host starting at the same
// time waits, then finds the schema current. PostgreSQL's DDL is
// transactional, so a failed migration leaves nothing behind.
func (s *DB) migratePostgres(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(pgAdvisoryLock)); err != nil {
			return fmt.Errorf("locking the schema: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("creating the schema version table: %w", err)
		}
		v, err := pgVersion(ctx, tx)
		if err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this restrictedmail knows (%d); use the newer binary", v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, pgDDL(migrations[i])); err != nil {
				return fmt.Errorf("applying migration %d: %w", i+1, err)
			}
		}
		if v == len(migrations) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM schema_version`); err != nil {
			return fmt.Errorf("recording schema version %d: %w", len(migrations), err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, len(migrations)); err != nil {
			return fmt.Errorf("recording schema version %d: %w", len(migrations), err)
		}
		return nil
	})
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// pgVersion reads the schema version: 0 for a new database.
func pgVersion(ctx context.Context, q queryRower) (int, error) {
	var v int
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}

// checkVersion refuses a schema other than this binary's (read-only
// opens, which do not migrate).
func (s *DB) checkVersion(ctx context.Context) error {
	v, err := s.SchemaVersion(ctx)
	if err == nil && v != len(migrations) {
		err = fmt.Errorf("schema version %d, this restrictedmail needs %d (start `serve` once to migrate)", v, len(migrations))
	}
	return err
}

// isUniqueViolation tells whether err is PostgreSQL's refusal of a
// duplicate in the unique index or constraint named constraint.
func isUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == constraint
}
