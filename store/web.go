package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// What the web page for list owners keeps: one-time sign-in links and
// sessions, both by the SHA-256 of their secret (the secret itself is only
// in the mail and in the browser's cookie), so that a copy of the database
// signs nobody in. Sessions live here rather than in memory so that
// several hosts behind one name share them.

const webMigration = `CREATE TABLE web_signin_links (
		hash    BLOB PRIMARY KEY,
		email   TEXT NOT NULL,
		created INTEGER NOT NULL,
		expires INTEGER NOT NULL,
		used    INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX web_signin_links_expires ON web_signin_links (expires);
	CREATE TABLE web_sessions (
		hash    BLOB PRIMARY KEY,
		email   TEXT NOT NULL,
		created INTEGER NOT NULL,
		expires INTEGER NOT NULL
	);
	CREATE INDEX web_sessions_expires ON web_sessions (expires);`

// ErrNoSignIn is returned for a sign-in link or session that is unknown,
// used or expired; the three are not told apart.
var ErrNoSignIn = errors.New("no such sign-in link or session, or it has expired")

// WebSession is a signed-in person.
type WebSession struct {
	Email   string
	Created time.Time
	Expires time.Time
}

// AddSignInLink records a sign-in link for email by the hash of its
// secret, and forgets expired links and sessions.
func (s *DB) AddSignInLink(ctx context.Context, hash [32]byte, email string, now, expires time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := pruneWebTx(ctx, tx, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO web_signin_links (hash, email, created, expires) VALUES (?, ?, ?, ?)`,
			hash[:], email, now.Unix(), expires.Unix())
		return err
	})
	if err != nil {
		return fmt.Errorf("recording a sign-in link: %w", err)
	}
	return nil
}

// UseSignInLink marks the link with hash used and returns its address: a
// link works once (one conditional UPDATE, so that two hosts racing on
// one link cannot both win), and not after it expired (ErrNoSignIn).
func (s *DB) UseSignInLink(ctx context.Context, hash [32]byte, now time.Time) (string, error) {
	var email string
	err := s.db.QueryRowContext(ctx, `UPDATE web_signin_links SET used = 1 WHERE hash = ? AND used = 0 AND expires > ? RETURNING email`,
		hash[:], now.Unix()).Scan(&email)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", ErrNoSignIn
	case err != nil:
		return "", fmt.Errorf("using a sign-in link: %w", err)
	}
	return email, nil
}

// AddWebSession records a session for email by the hash of its secret,
// and forgets expired links and sessions (sessions made for a trusted
// proxy's users come without a link).
func (s *DB) AddWebSession(ctx context.Context, hash [32]byte, email string, now, expires time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := pruneWebTx(ctx, tx, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO web_sessions (hash, email, created, expires) VALUES (?, ?, ?, ?)`,
			hash[:], email, now.Unix(), expires.Unix())
		return err
	})
	if err != nil {
		return fmt.Errorf("recording a session: %w", err)
	}
	return nil
}

// WebSessionByHash returns the session with hash that has not expired at
// now (ErrNoSignIn otherwise).
func (s *DB) WebSessionByHash(ctx context.Context, hash [32]byte, now time.Time) (WebSession, error) {
	var (
		ws               WebSession
		created, expires int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT email, created, expires FROM web_sessions WHERE hash = ? AND expires > ?`,
		hash[:], now.Unix()).Scan(&ws.Email, &created, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return WebSession{}, ErrNoSignIn
	case err != nil:
		return WebSession{}, fmt.Errorf("reading a session: %w", err)
	}
	ws.Created, ws.Expires = fromUnix(created), fromUnix(expires)
	return ws, nil
}

// DeleteWebSession ends the session with hash (signing out); an unknown
// one is no error.
func (s *DB) DeleteWebSession(ctx context.Context, hash [32]byte) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM web_sessions WHERE hash = ?`, hash[:]); err != nil {
		return fmt.Errorf("ending a session: %w", err)
	}
	return nil
}

// PruneWeb forgets the sign-in links and sessions expired at now.
func (s *DB) PruneWeb(ctx context.Context, now time.Time) error {
	if err := s.inTx(ctx, func(tx *sql.Tx) error { return pruneWebTx(ctx, tx, now) }); err != nil {
		return fmt.Errorf("pruning sign-in links and sessions: %w", err)
	}
	return nil
}

func pruneWebTx(ctx context.Context, tx *sql.Tx, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM web_signin_links WHERE expires <= ?`, now.Unix()); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE expires <= ?`, now.Unix())
	return err
}

// FailedRecipients counts, by list (address.Key form), the recipients
// that failed in deliveries created since since — refused by the relay
// or bounced later, which to the list's owner is the same failure: what
// the web page's overview shows as needing attention. Delayed recipients
// do not count.
func (s *DB) FailedRecipients(ctx context.Context, since time.Time) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT d.list, COUNT(*) FROM delivery_recipients r JOIN deliveries d ON d.id = r.delivery_id
		WHERE r.state IN (?, ?) AND d.created >= ? GROUP BY d.list`, int(Failed), int(Bounced), since.Unix())
	if err != nil {
		return nil, fmt.Errorf("counting failed recipients: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var (
			list string
			n    int64
		)
		if err := rows.Scan(&list, &n); err != nil {
			return nil, fmt.Errorf("counting failed recipients: %w", err)
		}
		out[list] = n
	}
	return out, rows.Err()
}
