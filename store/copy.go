package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Copying a SQLite store into PostgreSQL (`restrictedmail store copy`),
// moving from one host to several. Every table of the schema is copied,
// found in SQLite's catalogue in the order the migrations created them —
// which is also the order their foreign keys allow — so tables that later
// migrations add are copied without this code knowing them. Rows go in
// batches, each batch in one transaction, with ON CONFLICT DO NOTHING: a
// second run copies nothing twice, and a row whose key is there already
// with other values is left alone and reported.
//
// Two kinds of state are not carried over. Sign-in links and web sessions
// live minutes to hours: copying them would move secrets' hashes for no
// gain, so the web page's users sign in again (notCopied). Leases and
// claims — of deliveries and of webhook messages — name processes of the
// host being retired: they are copied empty (copiedEmpty), so that the new
// hosts take over at once rather than after the leases run out.

// notCopied says why table is left out, or "" when it is copied.
func notCopied(table string) string {
	switch table {
	case "web_signin_links":
		return "short-lived: not copied; links sent before the copy no longer work"
	case "web_sessions":
		return "short-lived: not copied; the web page's users sign in again"
	}
	return ""
}

// copiedEmpty returns the value that column col of table is copied with
// instead of its own, if any.
func copiedEmpty(table, col string) (any, bool) {
	switch table + "." + col {
	case "deliveries.lease_owner", "webhook_queue.claimed_by":
		return "", true
	case "deliveries.lease_until":
		return int64(0), true
	}
	return nil, false
}

// CopyTable is what Copy did with one table.
type CopyTable struct {
	Table     string
	Copied    int      // rows inserted
	Present   int      // rows that were there already, the same
	Conflicts []string // rows left alone because the target holds others ("key=value, ...: why")
	Skipped   string   // not copied, and why (sign-in links, sessions)
}

// maxConflictsListed bounds the conflicts named per table; Conflicts
// counts them all.
const maxConflictsListed = 20

// CopyTo copies every row of the SQLite store s into to (a migrated
// store of the same schema version) and reports per table. progress, when
// not nil, is called after each table.
func (s *DB) CopyTo(ctx context.Context, to *DB, progress func(CopyTable)) ([]CopyTable, error) {
	if s.pg {
		return nil, errors.New("copying a store: the source must be a SQLite store")
	}
	from, err := s.SchemaVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("copying a store: %w", err)
	}
	if target, err := to.SchemaVersion(ctx); err != nil || target != from {
		return nil, fmt.Errorf("copying a store: schema versions differ (source %d, target %d: %v)", from, target, err)
	}
	tables, err := s.sqliteTables(ctx)
	if err != nil {
		return nil, fmt.Errorf("copying a store: listing tables: %w", err)
	}
	var out []CopyTable
	for _, t := range tables {
		if why := notCopied(t.name); why != "" {
			ct := CopyTable{Table: t.name, Skipped: why}
			out = append(out, ct)
			if progress != nil {
				progress(ct)
			}
			continue
		}
		ct, err := s.copyTable(ctx, to, t)
		if err != nil {
			return out, fmt.Errorf("copying table %s: %w", t.name, err)
		}
		out = append(out, ct)
		if progress != nil {
			progress(ct)
		}
	}
	return out, nil
}

type tableInfo struct {
	name string
	cols []string
	pk   []string // primary key columns, in key order
}

// sqliteTables lists the store's tables in the order they were created,
// with their columns and primary keys (SQLite-only: PRAGMA).
func (s *DB) sqliteTables(ctx context.Context) ([]tableInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY rowid`)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []tableInfo
	for _, n := range names {
		t := tableInfo{name: n}
		rows, err := s.db.QueryContext(ctx, `SELECT name, pk FROM pragma_table_info(?) ORDER BY cid`, n)
		if err != nil {
			return nil, err
		}
		pk := map[int]string{}
		for rows.Next() {
			var (
				col string
				k   int
			)
			if err := rows.Scan(&col, &k); err != nil {
				rows.Close()
				return nil, err
			}
			t.cols = append(t.cols, col)
			if k > 0 {
				pk[k] = col
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		for i := 1; i <= len(pk); i++ {
			t.pk = append(t.pk, pk[i])
		}
		if len(t.pk) == 0 {
			return nil, fmt.Errorf("table %s has no primary key", n)
		}
		out = append(out, t)
	}
	return out, nil
}

func (s *DB) copyTable(ctx context.Context, to *DB, t tableInfo) (CopyTable, error) {
	ct := CopyTable{Table: t.name}
	cols := strings.Join(t.cols, ", ")
	rows, err := s.db.QueryContext(ctx, `SELECT `+cols+` FROM `+t.name+` ORDER BY `+strings.Join(t.pk, ", "))
	if err != nil {
		return ct, err
	}
	defer rows.Close()
	// PostgreSQL takes at most 65535 parameters a statement.
	batch := max(1, min(rowsPerStatement, 30000/len(t.cols)))
	var pending [][]any
	for rows.Next() {
		vals := make([]any, len(t.cols))
		ptrs := make([]any, len(t.cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return ct, err
		}
		for i, c := range t.cols {
			if v, ok := copiedEmpty(t.name, c); ok {
				vals[i] = v
			}
		}
		pending = append(pending, vals)
		if len(pending) == batch {
			if err := to.copyBatch(ctx, t, pending, &ct); err != nil {
				return ct, err
			}
			pending = pending[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return ct, err
	}
	if len(pending) > 0 {
		if err := to.copyBatch(ctx, t, pending, &ct); err != nil {
			return ct, err
		}
	}
	if to.pg {
		// Identity columns (webhook_events.seq) continue after the
		// numbers copied.
		for _, c := range t.cols {
			var seq sql.NullString
			if err := to.db.QueryRowContext(ctx, `SELECT pg_get_serial_sequence(?, ?)`, t.name, c).Scan(&seq); err != nil {
				return ct, fmt.Errorf("finding the sequence of %s.%s: %w", t.name, c, err)
			}
			if !seq.Valid {
				continue
			}
			if _, err := to.db.ExecContext(ctx, `SELECT setval(CAST(? AS regclass), COALESCE((SELECT MAX(`+c+`) FROM `+t.name+`), 0) + 1, false)`,
				seq.String); err != nil {
				return ct, fmt.Errorf("continuing the numbering of %s.%s: %w", t.name, c, err)
			}
		}
	}
	return ct, nil
}

// copyBatch inserts rows into the target store s in one transaction; the
// rows it did not insert are compared with what the target holds.
func (s *DB) copyBatch(ctx context.Context, t tableInfo, rows [][]any, ct *CopyTable) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		ph := "(" + repeatJoin("?", len(t.cols)) + ")"
		args := make([]any, 0, len(rows)*len(t.cols))
		for _, r := range rows {
			args = append(args, r...)
		}
		q := `INSERT INTO ` + t.name + ` (` + strings.Join(t.cols, ", ") + `) VALUES ` + repeatJoin(ph, len(rows)) +
			` ON CONFLICT DO NOTHING RETURNING ` + strings.Join(t.pk, ", ")
		res, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		inserted := map[string]bool{}
		for res.Next() {
			key := make([]any, len(t.pk))
			ptrs := make([]any, len(t.pk))
			for i := range key {
				ptrs[i] = &key[i]
			}
			if err := res.Scan(ptrs...); err != nil {
				res.Close()
				return err
			}
			inserted[keyString(key)] = true
		}
		res.Close()
		if err := res.Err(); err != nil {
			return err
		}
		ct.Copied += len(inserted)
		for _, r := range rows {
			key := pkValues(t, r)
			if inserted[keyString(key)] {
				continue
			}
			if err := compareExisting(ctx, tx, t, r, key, ct); err != nil {
				return err
			}
		}
		return nil
	})
}

// compareExisting judges a row the target refused: the same row (copied
// before), or a conflict.
func compareExisting(ctx context.Context, tx *sql.Tx, t tableInfo, r, key []any, ct *CopyTable) error {
	where := make([]string, len(t.pk))
	for i, c := range t.pk {
		where[i] = c + " = ?"
	}
	have := make([]any, len(t.cols))
	ptrs := make([]any, len(t.cols))
	for i := range have {
		ptrs[i] = &have[i]
	}
	err := tx.QueryRowContext(ctx, `SELECT `+strings.Join(t.cols, ", ")+` FROM `+t.name+` WHERE `+strings.Join(where, " AND "), key...).Scan(ptrs...)
	why := ""
	switch {
	case errors.Is(err, sql.ErrNoRows):
		why = "another row holds one of its unique values"
	case err != nil:
		return err
	default:
		for i := range r {
			if !sameValue(r[i], have[i]) {
				why = "the target's " + t.cols[i] + " differs"
				break
			}
		}
	}
	if why == "" {
		ct.Present++
		return nil
	}
	if len(ct.Conflicts) < maxConflictsListed {
		ct.Conflicts = append(ct.Conflicts, describeKey(t, key)+": "+why)
	} else if len(ct.Conflicts) == maxConflictsListed {
		ct.Conflicts = append(ct.Conflicts, "(more conflicts not listed)")
	}
	return nil
}

func pkValues(t tableInfo, r []any) []any {
	out := make([]any, len(t.pk))
	for i, k := range t.pk {
		for j, c := range t.cols {
			if c == k {
				out[i] = r[j]
			}
		}
	}
	return out
}

// keyString is a key's values as a map key: drivers return a TEXT value
// as string and an INTEGER as int64 on both sides, a BLOB as []byte.
func keyString(key []any) string {
	var b strings.Builder
	for _, v := range key {
		fmt.Fprintf(&b, "%T:%v\x00", normal(v), normal(v))
	}
	return b.String()
}

func describeKey(t tableInfo, key []any) string {
	parts := make([]string, len(key))
	for i, c := range t.pk {
		parts[i] = fmt.Sprintf("%s=%v", c, normal(key[i]))
	}
	return strings.Join(parts, ", ")
}

// normal makes integer kinds int64, so that the two drivers' values
// compare equal.
func normal(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case bool:
		if x {
			return int64(1)
		}
		return int64(0)
	}
	return v
}

func sameValue(a, b any) bool {
	a, b = normal(a), normal(b)
	if ab, ok := a.([]byte); ok {
		if bb, ok := b.([]byte); ok {
			return bytes.Equal(ab, bb)
		}
		if bs, ok := b.(string); ok {
			return string(ab) == bs
		}
		return false
	}
	if bb, ok := b.([]byte); ok {
		if as, ok := a.(string); ok {
			return as == string(bb)
		}
		return false
	}
	return a == b
}
