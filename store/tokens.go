package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/token"
)

const tokenColumns = `id, hash, list, sender, created, expires, uses_allowed, uses_spent, recipients, hide_sender, revoked, owner, external_ref, report`

// AddToken stores a newly issued token.
func (s *DB) AddToken(ctx context.Context, r token.Record) error {
	if r.UsesAllowed < 1 {
		return fmt.Errorf("adding token %s: uses must be at least 1", r.ID)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, tokenArgs(r)...)
	if err != nil {
		return fmt.Errorf("adding token %s: %w", r.ID, err)
	}
	return nil
}

// TokenByHash returns the record of the token with hash h, or
// token.ErrNotFound.
func (s *DB) TokenByHash(ctx context.Context, h token.Hash) (token.Record, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE hash = ?`, h[:])
	r, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return token.Record{}, token.ErrNotFound
	}
	if err != nil {
		return token.Record{}, fmt.Errorf("looking up token: %w", err)
	}
	// The index lookup already matched; comparing again in constant time
	// costs nothing and keeps the match from depending on SQLite's compare.
	if !r.Hash.Equal(h) {
		return token.Record{}, token.ErrNotFound
	}
	return r, nil
}

// TokenByID returns the record with the given public id, or token.ErrNotFound.
func (s *DB) TokenByID(ctx context.Context, id string) (token.Record, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id)
	r, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return token.Record{}, token.ErrNotFound
	}
	if err != nil {
		return token.Record{}, fmt.Errorf("looking up token %s: %w", id, err)
	}
	return r, nil
}

// Tokens returns every token record, oldest first.
func (s *DB) Tokens(ctx context.Context) ([]token.Record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	defer rows.Close()
	var out []token.Record
	for rows.Next() {
		r, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("listing tokens: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	return out, nil
}

// RevokeToken marks the token with public id id as revoked.
func (s *DB) RevokeToken(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("revoking token %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("revoking token %s: %w", id, token.ErrNotFound)
	}
	return nil
}

// Spend uses the token once on behalf of one delivery. It is atomic and
// idempotent per delivery: a delivery that has already spent the token
// (Postfix handing the same message over again) gets (false, nil) and
// spends nothing more. Otherwise it returns (true, nil), or
// token.ErrUsedUp, ErrRevoked, ErrExpired or ErrNotFound.
func (s *DB) Spend(ctx context.Context, tokenID, deliveryID string, now time.Time) (spentNow bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		spentNow, err = spendTx(ctx, tx, tokenID, deliveryID, now)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("spending token %s for delivery %s: %w", tokenID, deliveryID, err)
	}
	return spentNow, nil
}

// spendTx spends one use of tokenID for deliveryID. It never reads and
// then writes: the spend row is claimed first (ON CONFLICT: a second
// claim of the same delivery, on this host or another, waits for the
// first to commit and then finds it), and the use is taken by one
// conditional UPDATE that PostgreSQL re-checks on the newest row version
// under READ COMMITTED — two hosts can never both take the last use.
// Only when it changes nothing is the token read, to say why.
func spendTx(ctx context.Context, tx *sql.Tx, tokenID, deliveryID string, now time.Time) (bool, error) {
	// The EXISTS spares a foreign-key violation for an unknown token,
	// which would abort a PostgreSQL transaction (tokens are never
	// deleted).
	res, err := tx.ExecContext(ctx, `INSERT INTO spends (delivery_id, token_id, spent)
		SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM tokens WHERE id = ?) ON CONFLICT (delivery_id) DO NOTHING`,
		deliveryID, tokenID, now.Unix(), tokenID)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, err
	} else if n == 0 {
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT token_id FROM spends WHERE delivery_id = ?`, deliveryID).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) {
			return false, token.ErrNotFound
		}
		if err != nil {
			return false, err
		}
		if owner != tokenID {
			return false, fmt.Errorf("delivery already spent another token (%s)", owner)
		}
		return false, nil
	}
	res, err = tx.ExecContext(ctx, `UPDATE tokens SET uses_spent = uses_spent + 1
		WHERE id = ? AND revoked = 0 AND (expires = 0 OR expires > ?) AND uses_spent < uses_allowed`, tokenID, now.Unix())
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, err
	} else if n == 1 {
		return true, nil
	}
	// Nothing spent: the caller's error rolls the spend row back.
	return false, whyUnusable(ctx, tx, tokenID, now)
}

// whyUnusable reads the token id to tell why it cannot be used
// (token.ErrNotFound, ErrRevoked, ErrExpired, ErrUsedUp).
func whyUnusable(ctx context.Context, tx *sql.Tx, id string, now time.Time) error {
	r, err := scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return token.ErrNotFound
	case err != nil:
		return err
	}
	if err := usable(r, now); err != nil {
		return err
	}
	return errors.New("the token changed during the spend; try again")
}

// inTx runs fn in a transaction: on SQLite an IMMEDIATE one (the DSN sets
// _txlock), so that concurrent writers queue on the busy timeout instead of
// failing on lock upgrade; on PostgreSQL a READ COMMITTED one, which is
// why every change in fn must be a conditional statement, not a read and
// a write.
func (s *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

type scanner interface{ Scan(dest ...any) error }

func scanToken(sc scanner) (token.Record, error) {
	var (
		r                token.Record
		hash             []byte
		created, expires int64
		recipients       string
	)
	err := sc.Scan(&r.ID, &hash, &r.List, &r.Sender, &created, &expires, &r.UsesAllowed, &r.UsesSpent,
		&recipients, &r.HideSender, &r.Revoked, &r.Owner, &r.ExternalRef, &r.Report)
	if err != nil {
		return token.Record{}, err
	}
	if len(hash) != len(r.Hash) {
		return token.Record{}, fmt.Errorf("token %s has a malformed hash", r.ID)
	}
	copy(r.Hash[:], hash)
	r.Created, r.Expires = fromUnix(created), fromUnix(expires)
	if recipients != "" {
		r.Recipients = strings.Split(recipients, "\n")
	}
	return r, nil
}

// tokenArgs are the values of tokenColumns for r.
func tokenArgs(r token.Record) []any {
	return []any{r.ID, r.Hash[:], r.List, r.Sender, unix(r.Created), unix(r.Expires), r.UsesAllowed, r.UsesSpent,
		strings.Join(r.Recipients, "\n"), r.HideSender, r.Revoked, r.Owner, r.ExternalRef, r.Report}
}
