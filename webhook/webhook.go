// Package webhook sends the events of deliveries and tokens to the
// portals' endpoints ([[webhooks]]): at least once, in order per
// endpoint, signed as Standard Webhooks specifies (webhook-id,
// webhook-timestamp, webhook-signature: v1 and the base64 HMAC-SHA256 of
// "id.timestamp.body"), from the durable queue the store keeps. The store
// adds an event in the same transaction as the change it reports (a token
// spent, a delivery completed), so a crash loses none; this package sends
// what is queued and records each attempt, so a restart resumes where the
// last one stopped. A failed attempt is retried after Backoff, doubling up
// to an hour, until GiveUpAfter from the event; then it is recorded as
// failed. Receivers drop duplicates by webhook-id: an attempt whose answer
// is lost is sent again.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
)

// Endpoint is one subscriber.
type Endpoint struct {
	URL         string
	Secret      []byte
	Events      []string
	Timeout     time.Duration // one attempt
	Backoff     time.Duration // before the first retry; doubles up to MaxBackoff
	GiveUpAfter time.Duration // from the event
}

// MaxBackoff caps the wait between two attempts.
const MaxBackoff = time.Hour

// Store is the queue; *store.DB satisfies it.
type Store interface {
	SetWebhookEndpoints(ctx context.Context, eps []store.WebhookEndpoint, now time.Time) error
	DueWebhooks(ctx context.Context, url string, now time.Time, limit int) ([]store.WebhookMessage, error)
	NextWebhookAttempt(ctx context.Context, url string) (time.Time, bool, error)
	RecordWebhookAttempt(ctx context.Context, url string, seq int64, a store.WebhookAttempt, now time.Time) error
	PruneWebhooks(ctx context.Context, delivered, failed time.Time) error
}

var _ Store = (*store.DB)(nil)

// Observer is told of every attempt (metrics): "delivered", "failed"
// (will be retried) or "gave_up".
type Observer interface {
	WebhookAttempt(result string)
}

// Attempt results.
const (
	ResultDelivered = "delivered"
	ResultFailed    = "failed"
	ResultGaveUp    = "gave_up"
)

// Options configure a Dispatcher.
type Options struct {
	Store    Store
	Logger   *slog.Logger     // nil: none
	Observer Observer         // nil: none
	Client   *http.Client     // nil: one without redirects
	Now      func() time.Time // nil: time.Now
	// Poll is how often an idle endpoint looks for new events (the
	// transactions that add them are in other goroutines, or processes).
	// Zero: one second.
	Poll time.Duration
}

// Keep delivered messages a week and failed ones a month, for the record.
const (
	keepDelivered = 7 * 24 * time.Hour
	keepFailed    = 30 * 24 * time.Hour
	pruneEvery    = time.Hour
	batch         = 20
)

// Dispatcher sends the queue of each endpoint in its own goroutine.
type Dispatcher struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
}

// New returns a dispatcher; Start sets it going.
func New(opts Options) *Dispatcher {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Dispatcher{opts: opts, log: opts.Logger}
}

// SetEndpoints records eps as the endpoints in force — from now on the
// store queues events for them — and (re)starts one sender per endpoint.
// Messages queued for an endpoint no longer configured are recorded as
// failed.
func (d *Dispatcher) SetEndpoints(ctx context.Context, eps []Endpoint) error {
	recs := make([]store.WebhookEndpoint, len(eps))
	for i, ep := range eps {
		recs[i] = store.WebhookEndpoint{URL: ep.URL, Events: ep.Events}
	}
	if err := d.opts.Store.SetWebhookEndpoints(ctx, recs, d.opts.Now()); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return nil
	}
	d.stopLocked()
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	for _, ep := range eps {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.run(wctx, ep)
		}()
	}
	if len(eps) > 0 {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.prune(wctx)
		}()
	}
	return nil
}

func (d *Dispatcher) stopLocked() {
	if d.cancel != nil {
		d.cancel()
		d.wg.Wait()
		d.cancel = nil
	}
}

// Stop stops the senders; an attempt in flight is abandoned and sent
// again after a restart.
func (d *Dispatcher) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	d.stopLocked()
}

// run sends ep's queue until ctx ends.
func (d *Dispatcher) run(ctx context.Context, ep Endpoint) {
	log := d.log.With("url", ep.URL)
	for ctx.Err() == nil {
		msgs, err := d.opts.Store.DueWebhooks(ctx, ep.URL, d.opts.Now(), batch)
		if err != nil && ctx.Err() == nil {
			log.Warn("reading the webhook queue", "err", err)
		}
		for _, m := range msgs {
			if ctx.Err() != nil {
				return
			}
			d.attempt(ctx, log, ep, m)
		}
		if len(msgs) == batch {
			continue
		}
		wait := d.opts.Poll
		if next, ok, err := d.opts.Store.NextWebhookAttempt(ctx, ep.URL); err == nil && ok {
			wait = min(wait, max(next.Sub(d.opts.Now()), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// attempt sends m to ep once and records the result.
func (d *Dispatcher) attempt(ctx context.Context, log *slog.Logger, ep Endpoint, m store.WebhookMessage) {
	err := d.send(ctx, ep, m)
	if ctx.Err() != nil {
		return // shutting down: not an attempt; it is sent again after the restart
	}
	now := d.opts.Now()
	a := store.WebhookAttempt{Delivered: err == nil}
	result := ResultDelivered
	if err != nil {
		a.Err = err.Error()
		a.Next = now.Add(backoff(ep.Backoff, m.Attempts))
		result = ResultFailed
		if now.Sub(m.Created) >= ep.GiveUpAfter {
			a.GiveUp, result = true, ResultGaveUp
		}
	}
	if rerr := d.opts.Store.RecordWebhookAttempt(ctx, ep.URL, m.Seq, a, now); rerr != nil {
		log.Warn("recording a webhook attempt; it will be sent again", "webhook_id", m.ID, "err", rerr)
	}
	if d.opts.Observer != nil {
		d.opts.Observer.WebhookAttempt(result)
	}
	switch result {
	case ResultDelivered:
		log.Info("webhook delivered", "webhook_id", m.ID, "type", m.Type, "attempt", m.Attempts+1)
	case ResultFailed:
		log.Warn("webhook failed; will retry", "webhook_id", m.ID, "type", m.Type, "attempt", m.Attempts+1, "err", a.Err, "next", a.Next.UTC().Format(time.RFC3339))
	default:
		log.Error("webhook failed; giving up", "webhook_id", m.ID, "type", m.Type, "attempt", m.Attempts+1, "err", a.Err)
	}
}

// backoff is the wait after the attempts-th failed attempt (0-based).
func backoff(first time.Duration, attempts int) time.Duration {
	if first <= 0 {
		first = 5 * time.Second
	}
	d := first
	for i := 0; i < attempts && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// Sign returns the webhook-signature value of a message: "v1," and the
// base64 HMAC-SHA256 of "id.timestamp.body" with secret.
func Sign(secret []byte, id string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	fmt.Fprintf(mac, "%s.%d.", id, ts)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// send posts m to ep; nil when the endpoint answered 2xx.
func (d *Dispatcher) send(ctx context.Context, ep Endpoint, m store.WebhookMessage) error {
	timeout := ep.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(m.Payload))
	if err != nil {
		return err
	}
	ts := d.opts.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "restrictedmail-webhooks")
	req.Header.Set("webhook-id", m.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(ep.Secret, m.ID, ts, m.Payload))
	resp, err := d.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("posting: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// prune forgets old messages now and then.
func (d *Dispatcher) prune(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		now := d.opts.Now()
		if err := d.opts.Store.PruneWebhooks(ctx, now.Add(-keepDelivered), now.Add(-keepFailed)); err != nil && ctx.Err() == nil {
			d.log.Warn("pruning the webhook queue", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
