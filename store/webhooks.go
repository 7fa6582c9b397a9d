package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The webhook outbox. `serve` writes the endpoints in force into
// webhook_endpoints (SetWebhookEndpoints); the transactions that spend a
// token or complete a delivery add an event and one queue row per
// endpoint subscribed to it, in the same transaction as the change they
// report — so an event is never lost by a crash, and never sent for a
// change that was rolled back. The webhook package sends the queue (at
// least once, with backoff) and records each attempt here.
//
// Several hosts share the outbox. Each message is sent by the host that
// claims it (ClaimWebhook: one conditional UPDATE that moves next_attempt
// to the end of a lease and names the claimant), so one event goes out
// once, not once per host; a host that dies mid-send leaves the message
// to whoever finds it due when the lease has run out. The endpoint list
// is the union of the hosts' configurations: a host adds or refreshes its
// own endpoints and never removes another's; an endpoint that no host has
// refreshed for EndpointTTL is dropped by ExpireWebhookEndpoints, and its
// queued messages fail.
const webhookClaimMigration = `ALTER TABLE webhook_queue ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
	ALTER TABLE webhook_endpoints ADD COLUMN seen INTEGER NOT NULL DEFAULT 0;`

// EndpointTTL is how long an endpoint stays subscribed after the last
// host that configures it refreshed it (the webhook senders refresh theirs
// at start, on reload and every hour).
const EndpointTTL = 24 * time.Hour

// Webhook event types.
const (
	EventDeliveryCompleted = "delivery.completed"
	EventTokenSpent        = "token.spent"
	EventFailedRecipients  = "delivery.failed_recipients"
)

// EventTypes are the event types, in the order the README lists them.
var EventTypes = []string{EventDeliveryCompleted, EventTokenSpent, EventFailedRecipients}

// Webhook queue states.
const (
	webhookPending   = 0
	webhookDelivered = 1
	webhookFailed    = 2
)

// maxFailedInEvent bounds the recipients a delivery.failed_recipients
// event names; failed_total has the count.
const maxFailedInEvent = 1000

// WebhookEndpoint is one subscriber: its URL and the event types it wants.
type WebhookEndpoint struct {
	URL    string
	Events []string
}

// SetWebhookEndpoints adds the endpoints of this host's configuration,
// or refreshes them (their event types as given, last seen now). It
// removes nothing: another host sharing the store may still send to an
// endpoint this host no longer configures. ExpireWebhookEndpoints drops
// what nobody refreshes any more.
func (s *DB) SetWebhookEndpoints(ctx context.Context, eps []WebhookEndpoint, now time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, ep := range eps {
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_endpoints (url, events, seen) VALUES (?, ?, ?)
				ON CONFLICT (url) DO UPDATE SET events = excluded.events, seen = excluded.seen`,
				ep.URL, strings.Join(ep.Events, ","), now.UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("setting the webhook endpoints: %w", err)
	}
	return nil
}

// ExpireWebhookEndpoints drops the endpoints last refreshed before before
// — no host configures them any more — and fails the messages still
// queued for endpoints that are gone. It returns the URLs dropped.
func (s *DB) ExpireWebhookEndpoints(ctx context.Context, before, now time.Time) ([]string, error) {
	var dropped []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		dropped = nil
		rows, err := tx.QueryContext(ctx, `DELETE FROM webhook_endpoints WHERE seen < ? RETURNING url`, before.UnixMilli())
		if err != nil {
			return err
		}
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return err
			}
			dropped = append(dropped, u)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE webhook_queue SET state = 2, last_error = 'endpoint removed from the configuration', updated = ?
			WHERE state = 0 AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.url = webhook_queue.url)`, now.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expiring webhook endpoints: %w", err)
	}
	return dropped, nil
}

// subscribers returns the URLs of the endpoints that want event type typ.
func subscribers(ctx context.Context, tx *sql.Tx, typ string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT url, events FROM webhook_endpoints ORDER BY url`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var url, events string
		if err := rows.Scan(&url, &events); err != nil {
			return nil, err
		}
		if slices.Contains(strings.Split(events, ","), typ) {
			out = append(out, url)
		}
	}
	return out, rows.Err()
}

// Event is the body of a webhook message (the Standard Webhooks shape:
// type, timestamp, data).
type Event struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      EventData `json:"data"`
}

// EventData is what an event says; the fields a type does not use are
// left out.
type EventData struct {
	TokenID     string `json:"token_id"`
	List        string `json:"list"`
	Owner       string `json:"owner"`
	ExternalRef string `json:"external_ref"`
	DeliveryID  string `json:"delivery_id"`
	Sender      string `json:"sender"`

	// token.spent
	UsesSpent *int `json:"uses_spent,omitempty"`
	UsesLeft  *int `json:"uses_left,omitempty"`

	// delivery.completed and delivery.failed_recipients
	CreatedAt   *time.Time   `json:"created_at,omitempty"`
	CompletedAt *time.Time   `json:"completed_at,omitempty"`
	Recipients  *EventCounts `json:"recipients,omitempty"`
	Failed      []FailedRcpt `json:"failed,omitempty"`
	FailedTotal *int         `json:"failed_total,omitempty"`
}

// EventCounts are a completed delivery's recipients.
type EventCounts struct {
	Delivered int `json:"delivered"`
	Failed    int `json:"failed"`
}

// FailedRcpt is a recipient refused for good, with the relay's reply.
type FailedRcpt struct {
	Address string `json:"address"`
	Reply   string `json:"reply"`
}

// emitSpent adds a token.spent event for the delivery d that has just
// spent its token.
func emitSpent(ctx context.Context, tx *sql.Tx, d Delivery) error {
	urls, err := subscribers(ctx, tx, EventTokenSpent)
	if err != nil || len(urls) == 0 {
		return err
	}
	var allowed, spent int
	var owner, ref string
	if err := tx.QueryRowContext(ctx, `SELECT uses_allowed, uses_spent, owner, external_ref FROM tokens WHERE id = ?`, d.TokenID).
		Scan(&allowed, &spent, &owner, &ref); err != nil {
		return err
	}
	left := max(allowed-spent, 0)
	ev := Event{Type: EventTokenSpent, Timestamp: d.Created.UTC().Truncate(time.Second), Data: EventData{
		TokenID: d.TokenID, List: d.List, Owner: owner, ExternalRef: ref, DeliveryID: d.ID, Sender: d.Sender,
		UsesSpent: &spent, UsesLeft: &left,
	}}
	return enqueue(ctx, tx, ev, urls, d.Created)
}

// emitCompleted adds the events of a delivery that has just completed.
func emitCompleted(ctx context.Context, tx *sql.Tx, id string, c Counts, now time.Time) error {
	done, err := subscribers(ctx, tx, EventDeliveryCompleted)
	if err != nil {
		return err
	}
	var failed []string
	if c.Failed > 0 {
		if failed, err = subscribers(ctx, tx, EventFailedRecipients); err != nil {
			return err
		}
	}
	if len(done) == 0 && len(failed) == 0 {
		return nil
	}
	d, err := deliveryTx(ctx, tx, id)
	if err != nil {
		return err
	}
	var owner, ref string
	if err := tx.QueryRowContext(ctx, `SELECT owner, external_ref FROM tokens WHERE id = ?`, d.TokenID).Scan(&owner, &ref); err != nil {
		return err
	}
	created, completed := d.Created, now.UTC().Truncate(time.Second)
	data := EventData{
		TokenID: d.TokenID, List: d.List, Owner: owner, ExternalRef: ref, DeliveryID: d.ID, Sender: d.Sender,
		CreatedAt: &created, CompletedAt: &completed, Recipients: &EventCounts{Delivered: c.Delivered, Failed: c.Failed},
	}
	if len(done) > 0 {
		if err := enqueue(ctx, tx, Event{Type: EventDeliveryCompleted, Timestamp: completed, Data: data}, done, now); err != nil {
			return err
		}
	}
	if len(failed) == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT rcpt, detail FROM delivery_recipients WHERE delivery_id = ? AND state = 2 ORDER BY rcpt LIMIT ?`, id, maxFailedInEvent)
	if err != nil {
		return err
	}
	for rows.Next() {
		var f FailedRcpt
		if err := rows.Scan(&f.Address, &f.Reply); err != nil {
			rows.Close()
			return err
		}
		data.Failed = append(data.Failed, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	total := c.Failed
	data.FailedTotal = &total
	return enqueue(ctx, tx, Event{Type: EventFailedRecipients, Timestamp: completed, Data: data}, failed, now)
}

var msgIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newMessageID returns a webhook message id ("msg_" and 128 random bits),
// the same for every attempt and every endpoint, so receivers can drop
// duplicates.
func newMessageID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "msg_" + msgIDEncoding.EncodeToString(b)
}

func enqueue(ctx context.Context, tx *sql.Tx, ev Event, urls []string, now time.Time) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	// RETURNING rather than LastInsertId, which pgx does not have.
	var seq int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO webhook_events (id, type, created, payload) VALUES (?,?,?,?) RETURNING seq`,
		newMessageID(), ev.Type, now.UnixMilli(), payload).Scan(&seq); err != nil {
		return err
	}
	for _, u := range urls {
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_queue (event_seq, url, next_attempt) VALUES (?,?,?)`, seq, u, now.UnixMilli()); err != nil {
			return err
		}
	}
	return nil
}

// WebhookMessage is one queued message for one endpoint.
type WebhookMessage struct {
	Seq      int64
	ID       string // the message id (webhook-id)
	Type     string
	Created  time.Time
	Payload  []byte
	Attempts int // made so far
}

// DueWebhooks returns up to limit messages for url whose next attempt is
// due at now, in the order they were queued.
func (s *DB) DueWebhooks(ctx context.Context, url string, now time.Time, limit int) ([]WebhookMessage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT e.seq, e.id, e.type, e.created, e.payload, q.attempts
		FROM webhook_queue q JOIN webhook_events e ON e.seq = q.event_seq
		WHERE q.url = ? AND q.state = 0 AND q.next_attempt <= ? ORDER BY q.event_seq LIMIT ?`, url, now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("reading the webhook queue: %w", err)
	}
	defer rows.Close()
	var out []WebhookMessage
	for rows.Next() {
		var (
			m       WebhookMessage
			created int64
		)
		if err := rows.Scan(&m.Seq, &m.ID, &m.Type, &created, &m.Payload, &m.Attempts); err != nil {
			return nil, fmt.Errorf("reading the webhook queue: %w", err)
		}
		m.Created = time.UnixMilli(created).UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

// NextWebhookAttempt returns when the next queued message for url is due
// (ok=false when none is queued).
func (s *DB) NextWebhookAttempt(ctx context.Context, url string) (next time.Time, ok bool, err error) {
	var ms sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MIN(next_attempt) FROM webhook_queue WHERE url = ? AND state = 0`, url).Scan(&ms); err != nil {
		return time.Time{}, false, fmt.Errorf("reading the webhook queue: %w", err)
	}
	if !ms.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(ms.Int64), true, nil
}

// ClaimWebhook takes the message seq for url for owner to send until
// until: its next attempt moves to until, so no other sender (or host)
// finds it due before then. It reports false when the message is not due
// at now any more — another sender claimed it first, or it was settled.
func (s *DB) ClaimWebhook(ctx context.Context, url string, seq int64, owner string, now, until time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE webhook_queue SET next_attempt = ?, claimed_by = ?
		WHERE url = ? AND event_seq = ? AND state = 0 AND next_attempt <= ?`,
		until.UnixMilli(), owner, url, seq, now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("claiming webhook message %d: %w", seq, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claiming webhook message %d: %w", seq, err)
	}
	return n == 1, nil
}

// ReleaseWebhook hands back owner's claim of the message seq for url
// unsent (a sender shutting down mid-attempt), due again at now. A claim
// owner no longer holds is left alone.
func (s *DB) ReleaseWebhook(ctx context.Context, url string, seq int64, owner string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE webhook_queue SET next_attempt = ?, claimed_by = ''
		WHERE url = ? AND event_seq = ? AND state = 0 AND claimed_by = ?`, now.UnixMilli(), url, seq, owner)
	if err != nil {
		return fmt.Errorf("releasing webhook message %d: %w", seq, err)
	}
	return nil
}

// WebhookAttempt is the result of one attempt to send a message.
type WebhookAttempt struct {
	Owner     string // who claimed the message (ClaimWebhook)
	Delivered bool
	Err       string    // why it failed (status line or error), for the record
	Next      time.Time // when to try again, if not delivered and not given up
	GiveUp    bool      // failed for good
}

// RecordWebhookAttempt records an attempt at the message seq for url. A
// delivery is recorded whoever made it; a failure only while a.Owner
// still holds the claim — a sender whose lease ran out while it waited
// does not move the retry of the host that took the message over.
func (s *DB) RecordWebhookAttempt(ctx context.Context, url string, seq int64, a WebhookAttempt, now time.Time) error {
	state := webhookPending
	switch {
	case a.Delivered:
		state = webhookDelivered
	case a.GiveUp:
		state = webhookFailed
	}
	q := `UPDATE webhook_queue SET state = ?, attempts = attempts + 1, next_attempt = ?, last_error = ?, updated = ?
		WHERE url = ? AND event_seq = ? AND state = 0`
	args := []any{state, a.Next.UnixMilli(), a.Err, now.UnixMilli(), url, seq}
	if !a.Delivered {
		q += ` AND claimed_by = ?`
		args = append(args, a.Owner)
	}
	_, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("recording a webhook attempt: %w", err)
	}
	return nil
}

// WebhookStats counts the queued messages still to send and those given
// up on (kept until PruneWebhooks removes them).
func (s *DB) WebhookStats(ctx context.Context) (pending, failed int64, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN state = 0 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state = 2 THEN 1 ELSE 0 END), 0) FROM webhook_queue`).Scan(&pending, &failed)
	if err != nil {
		return 0, 0, fmt.Errorf("counting webhook messages: %w", err)
	}
	return pending, failed, nil
}

// PruneWebhooks forgets messages delivered before delivered and given up
// before failed, and the events no queue row refers to any more.
func (s *DB) PruneWebhooks(ctx context.Context, delivered, failed time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_queue WHERE (state = 1 AND updated < ?) OR (state = 2 AND updated < ?)`,
			delivered.UnixMilli(), failed.UnixMilli()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM webhook_events WHERE NOT EXISTS (SELECT 1 FROM webhook_queue q WHERE q.event_seq = webhook_events.seq)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("pruning the webhook queue: %w", err)
	}
	return nil
}
