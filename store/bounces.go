package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Bounces and delivery reports (issue 15). Every delivery gets a short
// random tag, unique in the journal, that the copies' envelope sender
// carries (VERP: board-bounces+TAG@example.org); a delivery status
// notification that comes back to the tagged address is matched to its
// delivery by the tag alone, and to a recipient only when that recipient
// was one of the delivery's. A recipient the relay had accepted moves to
// Bounced (a permanent failure reported later) or Delayed (a 4.x.x report);
// a later success or a permanent failure supersedes Delayed.
//
// A delivery whose sender asked for a report (its token's, else its
// list's "report" setting, resolved when it began) gets a row in reports
// when it completes — in the transaction that completes it — and at most
// one follow-up row when bounces arrive after the first report went out.
// The daemon's report worker sends due rows; the rows make the "report
// due" state survive a crash.

const bouncesMigration = `ALTER TABLE deliveries ADD COLUMN tag TEXT NOT NULL DEFAULT '';
	ALTER TABLE deliveries ADD COLUMN report TEXT NOT NULL DEFAULT '';
	CREATE UNIQUE INDEX deliveries_tag ON deliveries (tag) WHERE tag != '';
	CREATE INDEX deliveries_by_list ON deliveries (list, created);
	ALTER TABLE delivery_recipients ADD COLUMN bounce_status TEXT NOT NULL DEFAULT '';
	ALTER TABLE delivery_recipients ADD COLUMN bounce_detail TEXT NOT NULL DEFAULT '';
	ALTER TABLE tokens ADD COLUMN report TEXT NOT NULL DEFAULT '';
	CREATE TABLE reports (
		delivery_id TEXT NOT NULL REFERENCES deliveries(id),
		seq         INTEGER NOT NULL,
		due         INTEGER NOT NULL,
		state       INTEGER NOT NULL DEFAULT 0,
		attempts    INTEGER NOT NULL DEFAULT 0,
		last_error  TEXT NOT NULL DEFAULT '',
		updated     INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (delivery_id, seq)
	);
	CREATE INDEX reports_due ON reports (due) WHERE state = 0;`

// Recipient states after the relay accepted a copy.
const (
	// Bounced: the relay accepted the copy, and a delivery status
	// notification later reported a permanent failure. Counted as failed.
	Bounced State = 3
	// Delayed: the relay accepted the copy, and a notification reported a
	// temporary failure (4.x.x). Counted as delivered until it fails.
	Delayed State = 4
)

// String names the state as the commands, the API and the web page show it.
func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	case Bounced:
		return "bounced"
	case Delayed:
		return "delayed"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Report modes of a delivery (its token's or its list's "report").
const (
	ReportNone     = "none"
	ReportSummary  = "summary"
	ReportFailures = "failures"
)

// BounceKind is what a delivery status notification says of a recipient.
type BounceKind int

// Bounce kinds.
const (
	BounceFailed    BounceKind = iota + 1 // Action: failed
	BounceDelayed                         // Action: delayed
	BounceDelivered                       // Action: delivered, relayed, expanded
)

// Bounce is one recipient's entry in a delivery status notification.
type Bounce struct {
	Rcpt   string
	Kind   BounceKind
	Status string // enhanced status code, e.g. 5.1.1
	Detail string // the diagnostic (the remote server's reply)
}

// DeliveryByTag returns the delivery whose copies carried tag, or
// ErrNoDelivery.
func (s *DB) DeliveryByTag(ctx context.Context, tag string) (Delivery, error) {
	if tag == "" {
		return Delivery{}, ErrNoDelivery
	}
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT id FROM deliveries WHERE tag = ?`, tag).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, ErrNoDelivery
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("looking up a delivery by its bounce tag: %w", err)
	}
	return s.Delivery(ctx, id)
}

// bounceUpdates are the conditional transitions of each kind: a bounce
// changes only a recipient in a state it may leave.
var bounceUpdates = map[BounceKind]string{
	BounceFailed:    `UPDATE delivery_recipients SET state = 3, bounce_status = ?, bounce_detail = ?, updated = ? WHERE delivery_id = ? AND lower(rcpt) = lower(?) AND state IN (1, 4)`,
	BounceDelayed:   `UPDATE delivery_recipients SET state = 4, bounce_status = ?, bounce_detail = ?, updated = ? WHERE delivery_id = ? AND lower(rcpt) = lower(?) AND state = 1`,
	BounceDelivered: `UPDATE delivery_recipients SET state = 1, bounce_status = ?, bounce_detail = ?, updated = ? WHERE delivery_id = ? AND lower(rcpt) = lower(?) AND state = 4`,
}

// RecordBounces records the entries of one notification for delivery id
// and returns those that changed a recipient: an entry for an address that
// was not a recipient of the delivery, or that cannot move (a delay after
// a failure), changes nothing. When one did and the delivery's first
// report has gone out, a follow-up report is scheduled followUp from now
// (at most one per delivery).
func (s *DB) RecordBounces(ctx context.Context, id string, bs []Bounce, now time.Time, followUp time.Duration) ([]Bounce, error) {
	var applied []Bounce
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		applied = applied[:0]
		for _, b := range bs {
			q, ok := bounceUpdates[b.Kind]
			if !ok {
				continue
			}
			res, err := tx.ExecContext(ctx, q, b.Status, b.Detail, now.Unix(), id, b.Rcpt)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				applied = append(applied, b)
			}
		}
		if len(applied) == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO reports (delivery_id, seq, due)
			SELECT delivery_id, 1, CAST(? AS BIGINT) FROM reports WHERE delivery_id = ? AND seq = 0 AND state != 0
			ON CONFLICT (delivery_id, seq) DO NOTHING`, now.Add(followUp).Unix(), id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("recording bounces of delivery %s: %w", id, err)
	}
	return applied, nil
}

// The parameters in the SELECT lists below are cast: PostgreSQL would
// otherwise take an untyped parameter there for text.

// scheduleReportTx schedules the first report of delivery id, completed
// at now, when its sender asked for one and can receive it (never to the
// null sender).
func scheduleReportTx(ctx context.Context, tx *sql.Tx, id string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO reports (delivery_id, seq, due)
		SELECT id, 0, CAST(? AS BIGINT) FROM deliveries WHERE id = ? AND report IN (?, ?) AND sender != ''
		ON CONFLICT (delivery_id, seq) DO NOTHING`, now.Unix(), id, ReportSummary, ReportFailures)
	return err
}

// Report is one report due to a delivery's sender.
type Report struct {
	DeliveryID string
	Seq        int // 0: after the fan-out; 1: the follow-up on later bounces
	Attempts   int
}

// DueReports returns up to limit reports due at now, oldest first.
func (s *DB) DueReports(ctx context.Context, now time.Time, limit int) ([]Report, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT delivery_id, seq, attempts FROM reports WHERE state = 0 AND due <= ? ORDER BY due LIMIT ?`, now.Unix(), limit)
	if err != nil {
		return nil, fmt.Errorf("reading due reports: %w", err)
	}
	defer rows.Close()
	var out []Report
	for rows.Next() {
		var r Report
		if err := rows.Scan(&r.DeliveryID, &r.Seq, &r.Attempts); err != nil {
			return nil, fmt.Errorf("reading due reports: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ClaimReport takes report r for sending until lease: another worker (or
// host) does not see it due before then. It reports false when someone
// else took it first.
func (s *DB) ClaimReport(ctx context.Context, r Report, now, lease time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE reports SET due = ?, attempts = attempts + 1, updated = ? WHERE delivery_id = ? AND seq = ? AND state = 0 AND due <= ?`,
		lease.Unix(), now.Unix(), r.DeliveryID, r.Seq, now.Unix())
	if err != nil {
		return false, fmt.Errorf("claiming report %d of delivery %s: %w", r.Seq, r.DeliveryID, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Report row states.
const (
	reportDue  = 0
	reportSent = 1
	reportDone = 2 // given up, or nothing to say
)

// FinishReport records how report r ended: sent, or given up on (or
// with nothing to say) with detail.
func (s *DB) FinishReport(ctx context.Context, r Report, sent bool, detail string, now time.Time) error {
	st := reportDone
	if sent {
		st = reportSent
	}
	_, err := s.db.ExecContext(ctx, `UPDATE reports SET state = ?, last_error = ?, updated = ? WHERE delivery_id = ? AND seq = ? AND state = 0`,
		st, detail, now.Unix(), r.DeliveryID, r.Seq)
	if err != nil {
		return fmt.Errorf("finishing report %d of delivery %s: %w", r.Seq, r.DeliveryID, err)
	}
	return nil
}

// RetryReport records a failed attempt at report r; it is due again at next.
func (s *DB) RetryReport(ctx context.Context, r Report, detail string, now, next time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE reports SET due = ?, last_error = ?, updated = ? WHERE delivery_id = ? AND seq = ? AND state = 0`,
		next.Unix(), detail, now.Unix(), r.DeliveryID, r.Seq)
	if err != nil {
		return fmt.Errorf("postponing report %d of delivery %s: %w", r.Seq, r.DeliveryID, err)
	}
	return nil
}

// DeliveryDetailOf returns delivery id with its counts and at most
// maxRecipients recipients (failed and bounced first), or ErrNoDelivery.
func (s *DB) DeliveryDetailOf(ctx context.Context, id string, maxRecipients int) (DeliveryDetail, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return DeliveryDetail{}, fmt.Errorf("reading delivery %s: %w", id, err)
	}
	defer tx.Rollback()
	dd, err := deliveryDetailTx(ctx, tx, id, maxRecipients)
	if err != nil && !errors.Is(err, ErrNoDelivery) {
		err = fmt.Errorf("reading delivery %s: %w", id, err)
	}
	return dd, err
}

// DeliverySummary is one line of `delivery list`.
type DeliverySummary struct {
	Delivery
	Counts Counts
}

// DeliveryQuery selects deliveries, newest first.
type DeliveryQuery struct {
	List  string    // address.Key form; "" for every list
	Since time.Time // zero: any age
	Limit int
}

// ListDeliveries returns the deliveries q selects with their counts.
func (s *DB) ListDeliveries(ctx context.Context, q DeliveryQuery) ([]DeliverySummary, error) {
	if q.Limit < 1 {
		q.Limit = 100
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", err)
	}
	defer tx.Rollback()
	where, args := `created >= ?`, []any{unix(q.Since)}
	if q.List != "" {
		where += ` AND list = ?`
		args = append(args, q.List)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM deliveries WHERE `+where+` ORDER BY created DESC, id DESC LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing deliveries: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing deliveries: %w", err)
	}
	out := make([]DeliverySummary, 0, len(ids))
	for _, id := range ids {
		d, err := deliveryTx(ctx, tx, id)
		if err != nil {
			return nil, fmt.Errorf("listing deliveries: %w", err)
		}
		c, err := countsTx(ctx, tx, id)
		if err != nil {
			return nil, fmt.Errorf("listing deliveries: %w", err)
		}
		out = append(out, DeliverySummary{Delivery: d, Counts: c})
	}
	return out, nil
}

// BouncingRecipient is a recipient that hard-bounced in several recent
// deliveries of a list.
type BouncingRecipient struct {
	Rcpt       string
	Bounces    int    // deliveries, among the last ones, in which it bounced
	LastStatus string // the most recent bounce's status
	LastDetail string
}

// BouncingRecipients returns the recipients that bounced permanently in at
// least min of the last deliveries of list (address.Key form), most
// bounces first.
func (s *DB) BouncingRecipients(ctx context.Context, list string, last, min int) ([]BouncingRecipient, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT r.rcpt, COUNT(*), MAX(r.updated) FROM delivery_recipients r
		WHERE r.state = 3 AND r.delivery_id IN (SELECT id FROM deliveries WHERE list = ? ORDER BY created DESC LIMIT ?)
		GROUP BY r.rcpt HAVING COUNT(*) >= ? ORDER BY COUNT(*) DESC, r.rcpt`, list, last, min)
	if err != nil {
		return nil, fmt.Errorf("reading bouncing recipients of %s: %w", list, err)
	}
	type row struct {
		b    BouncingRecipient
		last int64
	}
	var found []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.b.Rcpt, &r.b.Bounces, &r.last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading bouncing recipients of %s: %w", list, err)
		}
		found = append(found, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading bouncing recipients of %s: %w", list, err)
	}
	out := make([]BouncingRecipient, 0, len(found))
	for _, r := range found {
		b := r.b
		err := s.db.QueryRowContext(ctx, `SELECT bounce_status, bounce_detail FROM delivery_recipients WHERE rcpt = ? AND state = 3 AND updated = ? LIMIT 1`,
			b.Rcpt, r.last).Scan(&b.LastStatus, &b.LastDetail)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("reading bouncing recipients of %s: %w", list, err)
		}
		out = append(out, b)
	}
	return out, nil
}
