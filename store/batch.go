package store

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"time"
)

// The journal writes a row per recipient: 100,000 for a large list. One
// statement per row costs more in database/sql and the driver (argument
// conversion, statement reset, context checks) than in SQLite itself, so
// rows are written rowsPerStatement at a time. 500 rows keep a statement's
// parameters (two a row for an insert) far below SQLite's limit of 32766.
const rowsPerStatement = 500

// insertRecipients records rcpts of delivery id as pending. A recipient
// given twice is recorded once (ON CONFLICT DO NOTHING), as before.
func insertRecipients(ctx context.Context, tx *sql.Tx, id string, rcpts []string) error {
	var full *sql.Stmt // the statement for a whole chunk, prepared once
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	args := make([]any, 0, 2*rowsPerStatement)
	for chunk := range slices.Chunk(rcpts, rowsPerStatement) {
		args = args[:0]
		for _, r := range chunk {
			args = append(args, id, r)
		}
		q := "INSERT INTO delivery_recipients (delivery_id, rcpt) VALUES " + repeatJoin("(?,?)", len(chunk)) +
			" ON CONFLICT (delivery_id, rcpt) DO NOTHING"
		var err error
		if len(chunk) < rowsPerStatement {
			_, err = tx.ExecContext(ctx, q, args...)
		} else {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, q); err != nil {
					return err
				}
			}
			_, err = full.ExecContext(ctx, args...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// outcomeGroup is recipients that get the same state and detail.
type outcomeGroup struct {
	state  State
	detail string
	rcpts  []string
}

// groupOutcomes groups outs by state and detail, so that one UPDATE can
// record many of them: all the delivered ones share one group, the
// failures one group per reply text. A recipient given twice keeps its
// first outcome, as when each outcome was its own UPDATE (the second found
// the row final already).
func groupOutcomes(outs []Outcome) []outcomeGroup {
	type key struct {
		state  State
		detail string
	}
	var groups []outcomeGroup
	index := map[key]int{}
	seen := make(map[string]struct{}, len(outs))
	for _, o := range outs {
		if _, dup := seen[o.Rcpt]; dup {
			continue
		}
		seen[o.Rcpt] = struct{}{}
		k := key{o.State, o.Detail}
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, outcomeGroup{state: o.State, detail: o.Detail})
		}
		groups[i].rcpts = append(groups[i].rcpts, o.Rcpt)
	}
	return groups
}

// updateRecipients records one group's outcome for those of its recipients
// of delivery id that are still pending.
func updateRecipients(ctx context.Context, tx *sql.Tx, id string, g outcomeGroup, now time.Time) error {
	args := make([]any, 0, 4+min(len(g.rcpts), rowsPerStatement))
	for chunk := range slices.Chunk(g.rcpts, rowsPerStatement) {
		args = append(args[:0], g.state, g.detail, now.Unix(), id)
		for _, r := range chunk {
			args = append(args, r)
		}
		q := "UPDATE delivery_recipients SET state = ?, detail = ?, updated = ? WHERE delivery_id = ? AND state = 0 AND rcpt IN (" +
			repeatJoin("?", len(chunk)) + ")"
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

// repeatJoin is n copies of s separated by commas.
func repeatJoin(s string, n int) string {
	var b strings.Builder
	b.Grow(n * (len(s) + 1))
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
	}
	return b.String()
}
