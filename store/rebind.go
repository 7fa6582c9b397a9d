package store

import (
	"context"
	"database/sql/driver"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/stdlib"
)

// rebindConnector hands out pgx connections that take the store's SQL as
// it is written for SQLite: `?` placeholders and booleans as arguments.
// The rule that makes the rewrite safe: the store's SQL never has a `?`
// that is not a placeholder, except inside a '...' string literal or a
// "..." identifier, which rebind leaves alone.
type rebindConnector struct{ driver.Connector }

func (c rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &rebindConn{Conn: conn.(*stdlib.Conn)}, nil
}

// rebindConn is pgx's database/sql connection with the placeholders
// rewritten; every other method (Ping, ResetSession) is pgx's own.
type rebindConn struct {
	*stdlib.Conn
	inTx bool // between BeginTx and Commit or Rollback
}

// BeginTx begins a transaction. BEGIN changes nothing, so when it finds
// its pooled connection dead (see QueryContext) database/sql may begin
// again on another one.
func (c *rebindConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.BeginTx(ctx, opts)
	if err != nil {
		if ctx.Err() == nil && c.Conn.Conn().IsClosed() {
			return nil, driver.ErrBadConn
		}
		return nil, err
	}
	c.inTx = true
	return &rebindTx{Tx: tx, c: c}, nil
}

type rebindTx struct {
	driver.Tx
	c *rebindConn
}

func (t *rebindTx) Commit() error {
	t.c.inTx = false
	return t.Tx.Commit()
}

func (t *rebindTx) Rollback() error {
	t.c.inTx = false
	return t.Tx.Rollback()
}

func (c *rebindConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(rebind(query))
}

func (c *rebindConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, rebind(query))
}

func (c *rebindConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, rebind(query), args)
}

// QueryContext runs query. A SELECT outside a transaction that finds its
// pooled connection dead — PostgreSQL restarted since it was last used —
// is handed back to database/sql as driver.ErrBadConn, which runs it again
// on another connection: after a restart the milter's token lookups do
// not fail once per pooled connection. pgx only does so when nothing was
// sent; a SELECT outside a transaction changes nothing, so it is safe to
// send again.
func (c *rebindConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := c.Conn.QueryContext(ctx, rebind(query), args)
	if err != nil && !c.inTx && ctx.Err() == nil && c.Conn.Conn().IsClosed() && isSelect(query) {
		return nil, driver.ErrBadConn
	}
	return rows, err
}

func isSelect(q string) bool {
	q = strings.TrimSpace(q)
	return len(q) >= 6 && strings.EqualFold(q[:6], "SELECT")
}

// CheckNamedValue converts arguments as database/sql would for a plain
// driver, and booleans to the 0/1 integers of the portable schema
// (PostgreSQL would refuse a bool for a BIGINT column).
func (c *rebindConn) CheckNamedValue(nv *driver.NamedValue) error {
	v, err := driver.DefaultParameterConverter.ConvertValue(nv.Value)
	if err != nil {
		return err
	}
	if b, ok := v.(bool); ok {
		v = int64(0)
		if b {
			v = int64(1)
		}
	}
	nv.Value = v
	return nil
}

// rebind rewrites the `?` placeholders of q into $1, $2, ... outside
// quoted literals and identifiers.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for _, seg := range splitQuoted(q) {
		if seg.quoted {
			b.WriteString(seg.text)
			continue
		}
		for _, r := range seg.text {
			if r == '?' {
				n++
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(n))
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

type segment struct {
	text   string
	quoted bool
}

// splitQuoted cuts q into the parts inside '...' and "..." (quotes
// included; a doubled quote is an escaped one and stays inside) and the
// parts outside.
func splitQuoted(q string) []segment {
	var out []segment
	start := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c != '\'' && c != '"' {
			continue
		}
		if i > start {
			out = append(out, segment{text: q[start:i]})
		}
		j := i + 1
		for j < len(q) {
			if q[j] == c {
				if j+1 < len(q) && q[j+1] == c {
					j += 2
					continue
				}
				break
			}
			j++
		}
		end := min(j+1, len(q))
		out = append(out, segment{text: q[i:end], quoted: true})
		start, i = end, end-1
	}
	if start < len(q) {
		out = append(out, segment{text: q[start:]})
	}
	return out
}

// The DDL translation from the portable subset the migrations are written
// in (SQLite's types TEXT, INTEGER, BLOB) to PostgreSQL. SQLite's INTEGER
// is 64 bits, so is BIGINT; an AUTOINCREMENT key becomes an identity
// column (BY DEFAULT, so that `store copy` can keep the numbers it
// copies).
var pgDDLRules = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?i)\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b`), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"},
	{regexp.MustCompile(`(?i)\)\s*WITHOUT\s+ROWID\b`), ")"},
	{regexp.MustCompile(`(?i)\bINTEGER\b`), "BIGINT"},
	{regexp.MustCompile(`(?i)\bBLOB\b`), "BYTEA"},
}

// pgDDL translates a migration for PostgreSQL, outside quoted literals.
func pgDDL(ddl string) string {
	var b strings.Builder
	for _, seg := range splitQuoted(ddl) {
		t := seg.text
		if !seg.quoted {
			for _, r := range pgDDLRules {
				t = r.re.ReplaceAllString(t, r.with)
			}
		}
		b.WriteString(t)
	}
	return b.String()
}
