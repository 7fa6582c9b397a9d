package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNoAPIKey is returned for an API key the store does not know (or that
// is revoked, for a revocation).
var ErrNoAPIKey = errors.New("no such API key")

// ErrAPIKeyName: a key that is not revoked already has the name.
var ErrAPIKeyName = errors.New("an API key with this name exists")

// APIKey is the store's record of an API key: the SHA-256 of the key,
// never the key.
type APIKey struct {
	ID       string
	Name     string
	Hash     [32]byte
	Lists    []string // address.Key forms, or "*" for every list
	Scopes   []string // "issue", "read", "revoke"
	Created  time.Time
	Expires  time.Time // zero: never
	LastUsed time.Time // zero: never; updated at most once a minute
	Revoked  bool
}

const apiKeyColumns = `id, name, hash, lists, scopes, created, expires, last_used, revoked`

// AddAPIKey stores a new API key (ErrAPIKeyName when another key that is
// not revoked has its name).
func (s *DB) AddAPIKey(ctx context.Context, k APIKey) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES (?,?,?,?,?,?,?,?,?)`,
		k.ID, k.Name, k.Hash[:], strings.Join(k.Lists, "\n"), strings.Join(k.Scopes, ","), unix(k.Created), unix(k.Expires),
		unix(k.LastUsed), k.Revoked)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed: api_keys.name") || isUniqueViolation(err, "api_keys_name") {
			return fmt.Errorf("adding API key %q: %w", k.Name, ErrAPIKeyName)
		}
		return fmt.Errorf("adding API key %q: %w", k.Name, err)
	}
	return nil
}

// APIKeyByHash returns the key whose hash is h (revoked and expired ones
// included: the caller judges), or ErrNoAPIKey.
func (s *DB) APIKeyByHash(ctx context.Context, h [32]byte) (APIKey, error) {
	k, err := scanAPIKey(s.db.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = ?`, h[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return APIKey{}, ErrNoAPIKey
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("looking up API key: %w", err)
	}
	// As for tokens: the index matched; compare again in constant time.
	if subtle.ConstantTimeCompare(k.Hash[:], h[:]) != 1 {
		return APIKey{}, ErrNoAPIKey
	}
	return k, nil
}

// APIKeys returns every API key, oldest first.
func (s *DB) APIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("listing API keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey revokes the key that is not revoked yet with id or name
// ref, and returns it; ErrNoAPIKey when there is none.
func (s *DB) RevokeAPIKey(ctx context.Context, ref string) (APIKey, error) {
	var k APIKey
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		k, err = scanAPIKey(tx.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE revoked = 0 AND (id = ? OR name = ?)`, ref, ref))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoAPIKey
		}
		if err != nil {
			return err
		}
		k.Revoked = true
		// Conditional: of two revocations at once, one finds it done.
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked = 1 WHERE id = ? AND revoked = 0`, k.ID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return ErrNoAPIKey
		}
		return err
	})
	if err != nil {
		return APIKey{}, fmt.Errorf("revoking API key %q: %w", ref, err)
	}
	return k, nil
}

// TouchAPIKey records that the key id was used at now.
func (s *DB) TouchAPIKey(ctx context.Context, id string, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE api_keys SET last_used = ? WHERE id = ? AND last_used < ?`, now.Unix(), id, now.Unix()); err != nil {
		return fmt.Errorf("recording the use of API key %s: %w", id, err)
	}
	return nil
}

func scanAPIKey(sc scanner) (APIKey, error) {
	var (
		k                         APIKey
		hash                      []byte
		lists, scopes             string
		created, expires, lastUse int64
	)
	if err := sc.Scan(&k.ID, &k.Name, &hash, &lists, &scopes, &created, &expires, &lastUse, &k.Revoked); err != nil {
		return APIKey{}, err
	}
	if len(hash) != len(k.Hash) {
		return APIKey{}, fmt.Errorf("API key %s has a malformed hash", k.ID)
	}
	copy(k.Hash[:], hash)
	if lists != "" {
		k.Lists = strings.Split(lists, "\n")
	}
	if scopes != "" {
		k.Scopes = strings.Split(scopes, ",")
	}
	k.Created, k.Expires, k.LastUsed = fromUnix(created), fromUnix(expires), fromUnix(lastUse)
	return k, nil
}
