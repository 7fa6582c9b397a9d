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
//
// Several hosts may share one store, each with a dispatcher: a dispatcher
// claims a message before it sends it (a lease in the queue row, the
// attempt's timeout and a margin long), so each message is sent by one
// host; one that dies mid-send leaves the message to any host once the
// lease has run out. Each dispatcher adds and refreshes its own endpoints
// and removes none of another host's; an endpoint that no host has
// refreshed for store.EndpointTTL is dropped, its queue failed.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
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
	ExpireWebhookEndpoints(ctx context.Context, before, now time.Time) ([]string, error)
	DueWebhooks(ctx context.Context, url string, now time.Time, limit int) ([]store.WebhookMessage, error)
	ClaimWebhook(ctx context.Context, url string, seq int64, owner string, now, until time.Time) (bool, error)
	ReleaseWebhook(ctx context.Context, url string, seq int64, owner string, now time.Time) error
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
	// Owner names this dispatcher in the claims of the messages it sends;
	// "": host name, pid and random bits.
	Owner string
}

// Keep delivered messages a week and failed ones a month, for the record.
const (
	keepDelivered = 7 * 24 * time.Hour
	keepFailed    = 30 * 24 * time.Hour
	pruneEvery    = time.Hour
	batch         = 20
	// claimMargin is added to an attempt's timeout for a claim's lease:
	// time to record the attempt after the endpoint answered.
	claimMargin = 30 * time.Second
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
	if opts.Owner == "" {
		opts.Owner = newOwner()
	}
	return &Dispatcher{opts: opts, log: opts.Logger}
}

// newOwner is an id for this dispatcher's claims: host name, pid and
// random bits, so that neither a restarted process nor another host of
// the same name and pid takes a claim for its own.
func newOwner() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// SetEndpoints records eps as this host's endpoints — from now on the
// store queues events for them — and (re)starts one sender per endpoint.
// An endpoint no longer configured here stays subscribed while another
// host refreshes it; when none has for store.EndpointTTL, the hourly
// prune drops it and records its queued messages as failed.
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
	// Pruning runs without endpoints too: it expires the endpoints that
	// no host configures any more.
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.prune(wctx, recs)
	}()
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

// attempt claims m, sends it to ep once and records the result. A message
// another sender claimed first is left to it.
func (d *Dispatcher) attempt(ctx context.Context, log *slog.Logger, ep Endpoint, m store.WebhookMessage) {
	now := d.opts.Now()
	ok, err := d.opts.Store.ClaimWebhook(ctx, ep.URL, m.Seq, d.opts.Owner, now, now.Add(attemptTimeout(ep)+claimMargin))
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("claiming a webhook message", "webhook_id", m.ID, "err", err)
		}
		return
	}
	if !ok {
		return // another host (or sender) has it
	}
	err = d.send(ctx, ep, m)
	if ctx.Err() != nil {
		// Shutting down: not an attempt. Hand the message back so that
		// another host need not wait for the claim to run out.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := d.opts.Store.ReleaseWebhook(rctx, ep.URL, m.Seq, d.opts.Owner, d.opts.Now()); rerr != nil {
			log.Warn("releasing a webhook message; it is sent again once its claim runs out", "webhook_id", m.ID, "err", rerr)
		}
		return
	}
	now = d.opts.Now()
	a := store.WebhookAttempt{Owner: d.opts.Owner, Delivered: err == nil}
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
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout(ep))
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

// attemptTimeout bounds one attempt at ep.
func attemptTimeout(ep Endpoint) time.Duration {
	if ep.Timeout <= 0 {
		return 10 * time.Second
	}
	return ep.Timeout
}

// prune forgets old messages now and then, refreshes this host's
// endpoints eps and expires those no host has refreshed for
// store.EndpointTTL. The first round (at start) expires nothing: hosts
// that were all down for longer than that have not refreshed theirs yet.
func (d *Dispatcher) prune(ctx context.Context, eps []store.WebhookEndpoint) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for first := true; ; first = false {
		now := d.opts.Now()
		if err := d.opts.Store.PruneWebhooks(ctx, now.Add(-keepDelivered), now.Add(-keepFailed)); err != nil && ctx.Err() == nil {
			d.log.Warn("pruning the webhook queue", "err", err)
		}
		if !first {
			if err := d.opts.Store.SetWebhookEndpoints(ctx, eps, now); err != nil && ctx.Err() == nil {
				d.log.Warn("refreshing the webhook endpoints", "err", err)
			}
			dropped, err := d.opts.Store.ExpireWebhookEndpoints(ctx, now.Add(-store.EndpointTTL), now)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("expiring webhook endpoints", "err", err)
			}
			for _, u := range dropped {
				d.log.Info("webhook endpoint dropped: no host has configured it for a while; its queued messages failed", "url", u, "after", store.EndpointTTL)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
