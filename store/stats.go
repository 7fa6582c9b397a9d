package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// TokenStats counts the tokens of one restricted address.
type TokenStats struct {
	List   string // address.Key form
	Issued int64  // tokens ever issued (revoked and used ones included)
	Spent  int64  // uses spent, over all its tokens
	Active int64  // tokens that could still be used now
}

// Stats is what the store knows that metrics report at scrape time: the
// `token` command is another process, so counting in the daemon would miss
// what it issues.
type Stats struct {
	Tokens            []TokenStats // one per list that has tokens, by list
	PendingRecipients int64        // recipients waiting for a hand-over
	PendingDeliveries int64        // deliveries not completed yet
}

// Stats reads the counts in one read transaction. It scans the tokens
// table (a few thousand rows at most in practice) and counts pending
// recipients through their partial index.
func (s *DB) Stats(ctx context.Context, now time.Time) (Stats, error) {
	var st Stats
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return st, fmt.Errorf("reading store statistics: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT list, COUNT(*), COALESCE(SUM(uses_spent), 0),
		COALESCE(SUM(CASE WHEN revoked = 0 AND (expires = 0 OR expires > ?) AND uses_spent < uses_allowed THEN 1 ELSE 0 END), 0)
		FROM tokens GROUP BY list ORDER BY list`, now.Unix())
	if err != nil {
		return st, fmt.Errorf("reading token statistics: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t TokenStats
		if err := rows.Scan(&t.List, &t.Issued, &t.Spent, &t.Active); err != nil {
			return st, fmt.Errorf("reading token statistics: %w", err)
		}
		st.Tokens = append(st.Tokens, t)
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("reading token statistics: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM delivery_recipients WHERE state = 0`).Scan(&st.PendingRecipients); err != nil {
		return st, fmt.Errorf("counting pending recipients: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM deliveries WHERE completed = 0`).Scan(&st.PendingDeliveries); err != nil {
		return st, fmt.Errorf("counting pending deliveries: %w", err)
	}
	return st, nil
}
