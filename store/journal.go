package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The delivery journal makes redistribution exactly-once across Postfix's
// hand-overs: a delivery (one received message for one restricted address)
// is recorded with its expanded recipients when its token is spent, in the
// same transaction, and each recipient moves from pending to delivered or
// failed as the relay answers. A hand-over of a known delivery sends only
// to the recipients still pending.

const journalMigration = `CREATE TABLE deliveries (
		id          TEXT PRIMARY KEY,
		list        TEXT NOT NULL,
		token_id    TEXT NOT NULL REFERENCES tokens(id),
		sender      TEXT NOT NULL,
		hide_sender INTEGER NOT NULL,
		created     INTEGER NOT NULL,
		completed   INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE delivery_recipients (
		delivery_id TEXT NOT NULL REFERENCES deliveries(id),
		rcpt        TEXT NOT NULL,
		state       INTEGER NOT NULL DEFAULT 0,
		detail      TEXT NOT NULL DEFAULT '',
		updated     INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (delivery_id, rcpt)
	) WITHOUT ROWID;
	CREATE INDEX delivery_recipients_pending ON delivery_recipients (delivery_id) WHERE state = 0;`

// ErrNoDelivery is returned for a delivery id the journal does not know.
var ErrNoDelivery = errors.New("no such delivery")

// Delivery is the journal's record of one redistribution.
type Delivery struct {
	ID         string
	List       string // restricted address (address.Key form)
	TokenID    string
	Sender     string // envelope sender of the received message
	HideSender bool
	Created    time.Time
	Completed  time.Time // zero while recipients are pending
}

// State is where a recipient of a delivery stands.
type State int

// Recipient states.
const (
	Pending State = iota
	Delivered
	Failed
)

// Outcome is a final result for one recipient: Delivered or Failed.
type Outcome struct {
	Rcpt   string
	State  State
	Detail string // the relay's reply for a failure
}

// Counts summarises a delivery's recipients.
type Counts struct{ Pending, Delivered, Failed int }

// BeginDelivery spends d's token for d and records d with its recipients,
// all pending, in one transaction: a crash leaves either both or neither.
// When the journal already holds d.ID (Postfix handing the message over
// again), it returns the recorded delivery and existing=true, and spends
// nothing. Spending refusals are token.ErrUsedUp, ErrRevoked, ErrExpired,
// ErrNotFound.
func (s *DB) BeginDelivery(ctx context.Context, d Delivery, rcpts []string) (rec Delivery, existing bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		rec, err = deliveryTx(ctx, tx, d.ID)
		if err == nil {
			existing = true
			return nil
		}
		if !errors.Is(err, ErrNoDelivery) {
			return err
		}
		spentNow, err := spendTx(ctx, tx, d.TokenID, d.ID, d.Created)
		if err != nil {
			return err
		}
		if !spentNow {
			// Another host (or process) began d between our read and
			// the spend: its delivery is committed now, and READ
			// COMMITTED lets this statement see it.
			if rec, err = deliveryTx(ctx, tx, d.ID); err == nil {
				existing = true
				return nil
			} else if !errors.Is(err, ErrNoDelivery) {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (id, list, token_id, sender, hide_sender, created) VALUES (?,?,?,?,?,?)`,
			d.ID, d.List, d.TokenID, d.Sender, d.HideSender, d.Created.Unix()); err != nil {
			return err
		}
		if err := insertRecipients(ctx, tx, d.ID, rcpts); err != nil {
			return err
		}
		// The webhook outbox, in the same transaction (webhooks.go).
		if err := emitSpent(ctx, tx, d); err != nil {
			return err
		}
		rec = d
		rec.Created = d.Created.UTC().Truncate(time.Second)
		return nil
	})
	if err != nil {
		return Delivery{}, false, fmt.Errorf("beginning delivery %s: %w", d.ID, err)
	}
	return rec, existing, nil
}

// Delivery returns the journal's record of id, or ErrNoDelivery.
func (s *DB) Delivery(ctx context.Context, id string) (Delivery, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Delivery{}, fmt.Errorf("reading delivery %s: %w", id, err)
	}
	defer tx.Rollback()
	d, err := deliveryTx(ctx, tx, id)
	if err != nil && !errors.Is(err, ErrNoDelivery) {
		err = fmt.Errorf("reading delivery %s: %w", id, err)
	}
	return d, err
}

func deliveryTx(ctx context.Context, tx *sql.Tx, id string) (Delivery, error) {
	var (
		d                  Delivery
		created, completed int64
	)
	err := tx.QueryRowContext(ctx, `SELECT id, list, token_id, sender, hide_sender, created, completed FROM deliveries WHERE id = ?`, id).
		Scan(&d.ID, &d.List, &d.TokenID, &d.Sender, &d.HideSender, &created, &completed)
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, ErrNoDelivery
	}
	if err != nil {
		return Delivery{}, err
	}
	d.Created, d.Completed = fromUnix(created), fromUnix(completed)
	return d, nil
}

// PendingRecipients returns the recipients of id not yet delivered or failed.
func (s *DB) PendingRecipients(ctx context.Context, id string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT rcpt FROM delivery_recipients WHERE delivery_id = ? AND state = 0 ORDER BY rcpt`, id)
	if err != nil {
		return nil, fmt.Errorf("reading pending recipients of %s: %w", id, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("reading pending recipients of %s: %w", id, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RecordOutcomes records final results for recipients of id in one
// transaction. A recipient already final is left as it is.
func (s *DB) RecordOutcomes(ctx context.Context, id string, outs []Outcome, now time.Time) error {
	if len(outs) == 0 {
		return nil
	}
	for _, o := range outs {
		if o.State != Delivered && o.State != Failed {
			return fmt.Errorf("recording %d outcome(s) of delivery %s: outcome for %s is not final", len(outs), id, o.Rcpt)
		}
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, g := range groupOutcomes(outs) {
			if err := updateRecipients(ctx, tx, id, g, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording %d outcome(s) of delivery %s: %w", len(outs), id, err)
	}
	return nil
}

// FinishDelivery marks every recipient of id still pending as failed with
// detail (giving up; "" when none is pending), marks the delivery complete,
// and returns its final counts.
func (s *DB) FinishDelivery(ctx context.Context, id, detail string, now time.Time) (Counts, error) {
	var c Counts
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE delivery_recipients SET state = 2, detail = ?, updated = ? WHERE delivery_id = ? AND state = 0`,
			detail, now.Unix(), id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE deliveries SET completed = ? WHERE id = ? AND completed = 0`, now.Unix(), id)
		if err != nil {
			return err
		}
		if c, err = countsTx(ctx, tx, id); err != nil {
			return err
		}
		// Completed by this call: tell the webhooks, in the same
		// transaction (webhooks.go).
		if n, _ := res.RowsAffected(); n == 1 {
			return emitCompleted(ctx, tx, id, c, now)
		}
		return nil
	})
	if err != nil {
		return Counts{}, fmt.Errorf("finishing delivery %s: %w", id, err)
	}
	return c, nil
}

// DeliveryCounts returns how many recipients of id are pending, delivered
// and failed.
func (s *DB) DeliveryCounts(ctx context.Context, id string) (Counts, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Counts{}, fmt.Errorf("counting recipients of %s: %w", id, err)
	}
	defer tx.Rollback()
	c, err := countsTx(ctx, tx, id)
	if err != nil {
		return Counts{}, fmt.Errorf("counting recipients of %s: %w", id, err)
	}
	return c, nil
}

func countsTx(ctx context.Context, tx *sql.Tx, id string) (Counts, error) {
	var c Counts
	rows, err := tx.QueryContext(ctx, `SELECT state, COUNT(*) FROM delivery_recipients WHERE delivery_id = ? GROUP BY state`, id)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	for rows.Next() {
		var st State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return c, err
		}
		switch st {
		case Pending:
			c.Pending = n
		case Delivered:
			c.Delivered = n
		case Failed:
			c.Failed = n
		}
	}
	return c, rows.Err()
}
