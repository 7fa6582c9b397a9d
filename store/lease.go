package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Several restrictedmail hosts may share one store. Two things keep a
// message distributed once across them:
//
//   - A lease: the process that fans a delivery out holds it (lease_owner,
//     lease_until) and renews it while it sends. Another process handed the
//     same delivery leaves it alone while the lease is live and takes it
//     over once it has expired (its owner died). A lease is a row, taken
//     and renewed by one conditional UPDATE each: no row lock or advisory
//     lock is ever held through SMTP.
//   - A second identity for a message: list + token + Message-ID. An
//     upstream that retried through the other MX after a lost 250 hands
//     over the same message with another Received field, so other bytes
//     and another delivery id; the unique index on that key makes both
//     arrivals one delivery, spent once.
const leaseMigration = `ALTER TABLE deliveries ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
	ALTER TABLE deliveries ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE deliveries ADD COLUMN message_id TEXT NOT NULL DEFAULT '';
	CREATE UNIQUE INDEX deliveries_by_message ON deliveries (list, token_id, message_id) WHERE message_id <> '';`

// ErrLeaseLost is RenewLease's answer when another process holds the
// lease now: the renewal came too late and the delivery was taken over.
var ErrLeaseLost = errors.New("the delivery's lease is held by another process")

// AcquireLease takes the lease of delivery id for owner until until, when
// the delivery is not complete and its lease is free, already owner's, or
// expired at now. It reports whether owner holds the lease now; when not,
// Delivery says who does, or that the delivery is complete.
func (s *DB) AcquireLease(ctx context.Context, id, owner string, now, until time.Time) (bool, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE deliveries SET lease_owner = ?, lease_until = ?
			WHERE id = ? AND completed = 0 AND (lease_owner = '' OR lease_owner = ? OR lease_until < ?)`,
			owner, until.Unix(), id, owner, now.Unix())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("acquiring the lease of delivery %s: %w", id, err)
	}
	return n == 1, nil
}

// RenewLease extends owner's lease of id to until, or returns ErrLeaseLost
// when owner no longer holds it.
func (s *DB) RenewLease(ctx context.Context, id, owner string, until time.Time) error {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE deliveries SET lease_until = ? WHERE id = ? AND lease_owner = ?`,
			until.Unix(), id, owner)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("renewing the lease of delivery %s: %w", id, err)
	case n == 0:
		return fmt.Errorf("renewing the lease of delivery %s: %w", id, ErrLeaseLost)
	}
	return nil
}

// ReleaseLease gives up owner's lease of id, so that another process need
// not wait for it to expire. Releasing a lease owner does not hold does
// nothing.
func (s *DB) ReleaseLease(ctx context.Context, id, owner string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE deliveries SET lease_owner = '', lease_until = 0 WHERE id = ? AND lease_owner = ?`, id, owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("releasing the lease of delivery %s: %w", id, err)
	}
	return nil
}

// DeliveryByMessage returns the delivery of the message with messageID
// that spent tokenID for list, or ErrNoDelivery. An empty messageID is
// never found: a message without one is known by its bytes only.
func (s *DB) DeliveryByMessage(ctx context.Context, list, tokenID, messageID string) (Delivery, error) {
	if messageID == "" {
		return Delivery{}, ErrNoDelivery
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Delivery{}, fmt.Errorf("reading the delivery of message %s: %w", messageID, err)
	}
	defer tx.Rollback()
	d, err := scanDelivery(tx.QueryRowContext(ctx, `SELECT `+deliveryColumns+` FROM deliveries
		WHERE list = ? AND token_id = ? AND message_id = ? AND message_id <> ''`, list, tokenID, messageID))
	if err != nil && !errors.Is(err, ErrNoDelivery) {
		err = fmt.Errorf("reading the delivery of message %s: %w", messageID, err)
	}
	return d, err
}

// MessageSpent reports whether a delivery of the message with messageID
// spent tokenID for list (policy.Journal): the message arriving again
// through another MX host is that delivery, not a new use of the token.
func (s *DB) MessageSpent(ctx context.Context, list, tokenID, messageID string) (bool, error) {
	_, err := s.DeliveryByMessage(ctx, list, tokenID, messageID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNoDelivery):
		return false, nil
	}
	return false, err
}

// sameMessageTx finds the delivery that an insert of d conflicted with:
// the one with d's id, else the one with d's message key.
func sameMessageTx(ctx context.Context, tx *sql.Tx, d Delivery) (Delivery, error) {
	rec, err := deliveryTx(ctx, tx, d.ID)
	if !errors.Is(err, ErrNoDelivery) || d.MessageID == "" {
		return rec, err
	}
	return scanDelivery(tx.QueryRowContext(ctx, `SELECT `+deliveryColumns+` FROM deliveries
		WHERE list = ? AND token_id = ? AND message_id = ?`, d.List, d.TokenID, d.MessageID))
}

const deliveryColumns = `id, list, token_id, sender, hide_sender, created, completed, message_id, lease_owner, lease_until, tag, report`

func scanDelivery(row scanner) (Delivery, error) {
	var (
		d                         Delivery
		created, completed, until int64
	)
	err := row.Scan(&d.ID, &d.List, &d.TokenID, &d.Sender, &d.HideSender, &created, &completed, &d.MessageID, &d.LeaseOwner, &until, &d.Tag, &d.Report)
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, ErrNoDelivery
	}
	if err != nil {
		return Delivery{}, err
	}
	d.Created, d.Completed, d.LeaseUntil = fromUnix(created), fromUnix(completed), fromUnix(until)
	return d, nil
}
