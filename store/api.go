package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/token"
)

// What the HTTP API and the token commands need beyond the milter's and
// the endpoint's lookups: tokens issued under an idempotency key, listed
// page by page with counts, re-keyed, their recipients replaced, their
// deliveries read back recipient by recipient.

const apiMigration = `ALTER TABLE tokens ADD COLUMN owner TEXT NOT NULL DEFAULT '';
	ALTER TABLE tokens ADD COLUMN external_ref TEXT NOT NULL DEFAULT '';
	CREATE INDEX tokens_by_list ON tokens (list, created, id);
	CREATE INDEX deliveries_by_token ON deliveries (token_id);
	CREATE TABLE idempotency_keys (
		scope       TEXT NOT NULL,
		key         TEXT NOT NULL,
		fingerprint BLOB NOT NULL,
		token_id    TEXT NOT NULL REFERENCES tokens(id),
		created     INTEGER NOT NULL,
		PRIMARY KEY (scope, key)
	) WITHOUT ROWID;
	CREATE INDEX idempotency_keys_created ON idempotency_keys (created);
	CREATE TABLE api_keys (
		id        TEXT PRIMARY KEY,
		name      TEXT NOT NULL,
		hash      BLOB NOT NULL UNIQUE,
		lists     TEXT NOT NULL,
		scopes    TEXT NOT NULL,
		created   INTEGER NOT NULL,
		expires   INTEGER NOT NULL DEFAULT 0,
		last_used INTEGER NOT NULL DEFAULT 0,
		revoked   INTEGER NOT NULL DEFAULT 0
	);
	CREATE UNIQUE INDEX api_keys_name ON api_keys (name) WHERE revoked = 0;
	CREATE TABLE webhook_endpoints (
		url    TEXT PRIMARY KEY,
		events TEXT NOT NULL
	);
	CREATE TABLE webhook_events (
		seq     INTEGER PRIMARY KEY AUTOINCREMENT,
		id      TEXT NOT NULL UNIQUE,
		type    TEXT NOT NULL,
		created INTEGER NOT NULL,
		payload BLOB NOT NULL
	);
	CREATE TABLE webhook_queue (
		event_seq    INTEGER NOT NULL REFERENCES webhook_events(seq),
		url          TEXT NOT NULL,
		state        INTEGER NOT NULL DEFAULT 0,
		attempts     INTEGER NOT NULL DEFAULT 0,
		next_attempt INTEGER NOT NULL,
		last_error   TEXT NOT NULL DEFAULT '',
		updated      INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (url, event_seq)
	) WITHOUT ROWID;
	CREATE INDEX webhook_queue_due ON webhook_queue (next_attempt) WHERE state = 0;`

// Errors of the API's token operations.
var (
	// ErrIdempotencyMismatch: an idempotency key was used before for a
	// different request.
	ErrIdempotencyMismatch = errors.New("idempotency key already used for a different request")
)

// IdempotencyRetention is how long an idempotency key is remembered.
const IdempotencyRetention = 24 * time.Hour

// Idempotency makes an issue safe to retry: the same Key within one Scope
// (an API key) returns the token issued the first time.
type Idempotency struct {
	Scope       string
	Key         string
	Fingerprint [32]byte // of the request; a different request under the same key is refused
}

// IssueToken stores a newly issued token. With idem, a key seen before
// returns the token recorded for it and replayed=true, storing nothing
// (ErrIdempotencyMismatch when the request differs).
func (s *DB) IssueToken(ctx context.Context, r token.Record, idem *Idempotency, now time.Time) (rec token.Record, replayed bool, err error) {
	if r.UsesAllowed < 1 {
		return token.Record{}, false, fmt.Errorf("adding token %s: uses must be at least 1", r.ID)
	}
	s.issueMu.Lock()
	defer s.issueMu.Unlock()
	// A second attempt is for the race of two hosts issuing under the same
	// key at once: the loser rolls back and finds the winner's token.
	for attempt := 0; ; attempt++ {
		rec, replayed, err = s.issueOnce(ctx, r, idem, now)
		if !errors.Is(err, errIdempotencyRace) || attempt > 0 {
			break
		}
	}
	if err != nil {
		return token.Record{}, false, fmt.Errorf("issuing token %s: %w", r.ID, err)
	}
	return rec, replayed, nil
}

// errIdempotencyRace: another transaction recorded the same idempotency
// key between this one's lookup and its insert.
var errIdempotencyRace = errors.New("idempotency key recorded concurrently")

func (s *DB) issueOnce(ctx context.Context, r token.Record, idem *Idempotency, now time.Time) (rec token.Record, replayed bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if idem != nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created < ?`, now.Add(-IdempotencyRetention).Unix()); err != nil {
				return err
			}
			var (
				fp []byte
				id string
			)
			err := tx.QueryRowContext(ctx, `SELECT fingerprint, token_id FROM idempotency_keys WHERE scope = ? AND key = ?`, idem.Scope, idem.Key).Scan(&fp, &id)
			switch {
			case err == nil:
				if subtle.ConstantTimeCompare(fp, idem.Fingerprint[:]) != 1 {
					return ErrIdempotencyMismatch
				}
				rec, err = scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
				replayed = true
				return err
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, tokenArgs(r)...); err != nil {
			return err
		}
		if idem != nil {
			res, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (scope, key, fingerprint, token_id, created) VALUES (?,?,?,?,?)
				ON CONFLICT (scope, key) DO NOTHING`, idem.Scope, idem.Key, idem.Fingerprint[:], r.ID, now.Unix())
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return errIdempotencyRace
			}
		}
		rec = r
		return nil
	})
	return rec, replayed, err
}

// usable refuses a token that can no longer be used: revoked, expired or
// used up (token.ErrRevoked, ErrExpired, ErrUsedUp).
func usable(r token.Record, now time.Time) error {
	switch {
	case r.Revoked:
		return token.ErrRevoked
	case r.Expired(now):
		return token.ErrExpired
	case r.UsesLeft() == 0:
		return token.ErrUsedUp
	}
	return nil
}

// usableSQL is the condition that a token can still be used, with one
// parameter, now.
const usableSQL = `revoked = 0 AND (expires = 0 OR expires > ?) AND uses_spent < uses_allowed`

// updateUsable sets the token id's column to value when the token can
// still be used — one conditional UPDATE, so that a spend of its last use
// or a revocation on another host cannot slip in between a check and the
// write — and returns the record after it.
func (s *DB) updateUsable(ctx context.Context, what, id, column string, value any, now time.Time) (token.Record, error) {
	var rec token.Record
	s.issueMu.Lock()
	defer s.issueMu.Unlock()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET `+column+` = ? WHERE id = ? AND `+usableSQL, value, id, now.Unix())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return whyUnusable(ctx, tx, id, now)
		}
		rec, err = scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
		return err
	})
	if err != nil {
		return token.Record{}, fmt.Errorf("%s token %s: %w", what, id, err)
	}
	return rec, nil
}

// RekeyToken gives the token id a new secret (its hash h): the old one is
// void from the commit on. Only a token that can still be used is
// re-keyed.
func (s *DB) RekeyToken(ctx context.Context, id string, h token.Hash, now time.Time) (token.Record, error) {
	return s.updateUsable(ctx, "re-keying", id, "hash", h[:], now)
}

// SetTokenRecipients replaces the recipients of the token id (none: the
// list's). Deliveries already begun keep theirs (the journal).
func (s *DB) SetTokenRecipients(ctx context.Context, id string, rcpts []string, now time.Time) (token.Record, error) {
	return s.updateUsable(ctx, "replacing the recipients of", id, "recipients", strings.Join(rcpts, "\n"), now)
}

// TokenState is where a token stands, as `token list` and the API show it.
type TokenState string

// Token states; a token is in exactly one, tested in this order.
const (
	StateRevoked TokenState = "revoked"
	StateExpired TokenState = "expired"
	StateUsed    TokenState = "used"
	StateActive  TokenState = "active"
)

// StateOf returns r's state at now.
func StateOf(r token.Record, now time.Time) TokenState {
	switch {
	case r.Revoked:
		return StateRevoked
	case r.Expired(now):
		return StateExpired
	case r.UsesLeft() == 0:
		return StateUsed
	}
	return StateActive
}

// stateSQL is each state as an SQL condition with one parameter, now.
var stateSQL = map[TokenState]string{
	StateRevoked: `revoked = 1`,
	StateExpired: `revoked = 0 AND expires != 0 AND expires <= ?`,
	StateUsed:    `revoked = 0 AND (expires = 0 OR expires > ?) AND uses_spent >= uses_allowed`,
	StateActive:  `revoked = 0 AND (expires = 0 OR expires > ?) AND uses_spent < uses_allowed`,
}

// StateCounts counts tokens by state.
type StateCounts struct{ Active, Used, Expired, Revoked int64 }

// Total is the sum of the counts.
func (c StateCounts) Total() int64 { return c.Active + c.Used + c.Expired + c.Revoked }

// Of returns the count of state st.
func (c StateCounts) Of(st TokenState) int64 {
	switch st {
	case StateActive:
		return c.Active
	case StateUsed:
		return c.Used
	case StateExpired:
		return c.Expired
	case StateRevoked:
		return c.Revoked
	}
	return c.Total()
}

// Cursor is a position in a list of tokens, newest first.
type Cursor struct {
	Created time.Time
	ID      string
}

// TokenQuery selects a page of the tokens of one list, newest first.
type TokenQuery struct {
	List  string     // address.Key form (required)
	Owner string     // "" for any
	State TokenState // "" for any
	After *Cursor    // the last token of the previous page
	Limit int
	Now   time.Time
}

// TokenPage is one page of tokens and the counts of the whole selection
// (by state, ignoring Query.State).
type TokenPage struct {
	Tokens []token.Record
	Next   *Cursor // nil on the last page
	Counts StateCounts
}

// ListTokens returns a page of q's tokens and the counts, read in one
// transaction.
func (s *DB) ListTokens(ctx context.Context, q TokenQuery) (TokenPage, error) {
	var page TokenPage
	if q.Limit < 1 {
		return page, errors.New("listing tokens: limit must be at least 1")
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return page, fmt.Errorf("listing tokens: %w", err)
	}
	defer tx.Rollback()
	where, args := `list = ?`, []any{q.List}
	if q.Owner != "" {
		where += ` AND owner = ?`
		args = append(args, q.Owner)
	}
	if page.Counts, err = countStates(ctx, tx, where, args, q.Now); err != nil {
		return page, fmt.Errorf("counting tokens: %w", err)
	}
	if q.State != "" {
		cond, ok := stateSQL[q.State]
		if !ok {
			return page, fmt.Errorf("listing tokens: unknown state %q", q.State)
		}
		where += ` AND ` + cond
		args = append(args, q.Now.Unix())
	}
	if q.After != nil {
		where += ` AND (created, id) < (?, ?)`
		args = append(args, unix(q.After.Created), q.After.ID)
	}
	args = append(args, q.Limit+1)
	rows, err := tx.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE `+where+` ORDER BY created DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return page, fmt.Errorf("listing tokens: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanToken(rows)
		if err != nil {
			return page, fmt.Errorf("listing tokens: %w", err)
		}
		page.Tokens = append(page.Tokens, r)
	}
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("listing tokens: %w", err)
	}
	if len(page.Tokens) > q.Limit {
		page.Tokens = page.Tokens[:q.Limit]
		last := page.Tokens[q.Limit-1]
		page.Next = &Cursor{Created: last.Created, ID: last.ID}
	}
	return page, nil
}

func countStates(ctx context.Context, tx *sql.Tx, where string, args []any, now time.Time) (StateCounts, error) {
	var c StateCounts
	n := now.Unix()
	q := `SELECT COALESCE(SUM(CASE WHEN ` + stateSQL[StateActive] + ` THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN ` + stateSQL[StateUsed] + ` THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN ` + stateSQL[StateExpired] + ` THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN ` + stateSQL[StateRevoked] + ` THEN 1 ELSE 0 END), 0) FROM tokens WHERE ` + where
	err := tx.QueryRowContext(ctx, q, append([]any{n, n, n}, args...)...).Scan(&c.Active, &c.Used, &c.Expired, &c.Revoked)
	return c, err
}

// ListSummary is what the API shows of one list: its tokens by state and
// its deliveries not completed yet.
type ListSummary struct {
	Tokens            StateCounts
	PendingDeliveries int64
}

// ListSummaries returns a summary of every list that has tokens or
// deliveries, by list (address.Key form).
func (s *DB) ListSummaries(ctx context.Context, now time.Time) (map[string]ListSummary, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("summarising lists: %w", err)
	}
	defer tx.Rollback()
	n := now.Unix()
	rows, err := tx.QueryContext(ctx, `SELECT list, COALESCE(SUM(CASE WHEN `+stateSQL[StateActive]+` THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN `+stateSQL[StateUsed]+` THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN `+stateSQL[StateExpired]+` THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN `+stateSQL[StateRevoked]+` THEN 1 ELSE 0 END), 0) FROM tokens GROUP BY list`, n, n, n)
	if err != nil {
		return nil, fmt.Errorf("summarising lists: %w", err)
	}
	out := map[string]ListSummary{}
	for rows.Next() {
		var (
			list string
			c    StateCounts
		)
		if err := rows.Scan(&list, &c.Active, &c.Used, &c.Expired, &c.Revoked); err != nil {
			rows.Close()
			return nil, fmt.Errorf("summarising lists: %w", err)
		}
		out[list] = ListSummary{Tokens: c}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summarising lists: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT list, COUNT(*) FROM deliveries WHERE completed = 0 GROUP BY list`)
	if err != nil {
		return nil, fmt.Errorf("summarising lists: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			list string
			n    int64
		)
		if err := rows.Scan(&list, &n); err != nil {
			return nil, fmt.Errorf("summarising lists: %w", err)
		}
		sum := out[list]
		sum.PendingDeliveries = n
		out[list] = sum
	}
	return out, rows.Err()
}

// RecipientState is one recipient of a delivery as the journal has it.
type RecipientState struct {
	Rcpt    string
	State   State
	Detail  string    // the relay's reply for a failure
	Updated time.Time // zero while pending
	// Bounce is the status (5.1.1) and diagnostic of the delivery status
	// notification that made the recipient Bounced or Delayed.
	BounceStatus, BounceDetail string
}

// DeliveryDetail is a delivery with its counts and (up to a limit) its
// recipients.
type DeliveryDetail struct {
	Delivery
	Counts     Counts
	Recipients []RecipientState
	Truncated  bool // more recipients than the limit
}

// TokenDeliveries returns the deliveries that spent the token id, oldest
// first, each with at most maxRecipients recipients (failed and bounced ones first,
// then pending and delayed, then delivered).
func (s *DB) TokenDeliveries(ctx context.Context, id string, maxRecipients int) ([]DeliveryDetail, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("reading deliveries of token %s: %w", id, err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id FROM deliveries WHERE token_id = ? ORDER BY created, id`, id)
	if err != nil {
		return nil, fmt.Errorf("reading deliveries of token %s: %w", id, err)
	}
	var ids []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading deliveries of token %s: %w", id, err)
		}
		ids = append(ids, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading deliveries of token %s: %w", id, err)
	}
	out := make([]DeliveryDetail, 0, len(ids))
	for _, did := range ids {
		dd, err := deliveryDetailTx(ctx, tx, did, maxRecipients)
		if err != nil {
			return nil, fmt.Errorf("reading delivery %s: %w", did, err)
		}
		out = append(out, dd)
	}
	return out, nil
}

func deliveryDetailTx(ctx context.Context, tx *sql.Tx, id string, maxRecipients int) (DeliveryDetail, error) {
	var dd DeliveryDetail
	d, err := deliveryTx(ctx, tx, id)
	if err != nil {
		return dd, err
	}
	dd.Delivery = d
	if dd.Counts, err = countsTx(ctx, tx, id); err != nil {
		return dd, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT rcpt, state, detail, updated, bounce_status, bounce_detail FROM delivery_recipients WHERE delivery_id = ?
		ORDER BY CASE state WHEN 2 THEN 0 WHEN 3 THEN 0 WHEN 4 THEN 1 WHEN 0 THEN 1 ELSE 2 END, rcpt LIMIT ?`, id, maxRecipients+1)
	if err != nil {
		return dd, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r       RecipientState
			updated int64
		)
		if err := rows.Scan(&r.Rcpt, &r.State, &r.Detail, &updated, &r.BounceStatus, &r.BounceDetail); err != nil {
			return dd, err
		}
		r.Updated = fromUnix(updated)
		dd.Recipients = append(dd.Recipients, r)
	}
	if len(dd.Recipients) > maxRecipients {
		dd.Recipients, dd.Truncated = dd.Recipients[:maxRecipients], true
	}
	return dd, rows.Err()
}
