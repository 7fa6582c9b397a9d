package delivery

import (
	"bytes"
	"context"
	"io"
	"sync"
	"time"

	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/store"
)

// Preview is what the engine would do with a message for one restricted
// address on its first hand-over, computed by the engine itself with a
// journal that records nothing and a relay that only captures: the dry run
// of `restrictedmail test`.
type Preview struct {
	DeliveryID string
	Verdict    policy.Verdict
	Reply      string   // the LMTP reply the recipients would get
	TokenID    string   // "" when no valid token was found
	Recipients []string // whom the copy would go to (verdict OK only)
	Envelope   string   // the copy's envelope sender
	Copy       []byte   // the signed copy (verdict OK only)
}

// DryRun runs one delivery of m to g with set, reading tokens from tokens
// and nothing else: no token is spent, nothing recorded or sent. set.Relay
// is not used; set.SpoolDir must be writable (a temporary directory).
func DryRun(ctx context.Context, set *Settings, tokens policy.Tokens, m Message, g policy.Group, now time.Time) Preview {
	capture := &capturer{}
	dry := *set
	dry.Relay = capture
	e := New(Options{Store: &memJournal{Tokens: tokens}, Now: func() time.Time { return now }})
	o := e.Deliver(ctx, &dry, m, g)
	p := Preview{DeliveryID: o.ID, Verdict: o.Verdict, TokenID: o.TokenID, Envelope: g.List.Bounce.String(), Reply: "250 2.0.0 OK"}
	if o.Reply != nil {
		p.Reply = o.Reply.String()
		if o.Verdict.OK() && o.Err != nil {
			// An internal failure after the decision (writing the copy):
			// the endpoint would answer 451; so does the preview.
			p.Verdict = policy.Verdict{Reason: policy.TempFail, List: g.List.Addr.String(), Cause: o.Err}
		}
		return p
	}
	p.Recipients, p.Copy = capture.rcpts, capture.body
	return p
}

// memJournal is a journal that forgets: it knows no delivery, spends
// nothing, and counts what the capturer reports, so that the engine takes
// the path of a first hand-over to its end.
type memJournal struct {
	policy.Tokens
	mu       sync.Mutex
	d        store.Delivery
	pending  map[string]bool
	counts   store.Counts
	finished bool
}

func (j *memJournal) Delivery(context.Context, string) (store.Delivery, error) {
	return store.Delivery{}, store.ErrNoDelivery
}

func (j *memJournal) BeginDelivery(_ context.Context, d store.Delivery, rcpts []string) (store.Delivery, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	d.Created = d.Created.UTC().Truncate(time.Second) // as the store keeps it
	j.d, j.pending = d, make(map[string]bool, len(rcpts))
	for _, r := range rcpts {
		j.pending[r] = true
	}
	return d, false, nil
}

func (j *memJournal) PendingRecipients(context.Context, string) ([]string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []string
	for r := range j.pending {
		out = append(out, r)
	}
	return out, nil
}

func (j *memJournal) RecordOutcomes(_ context.Context, _ string, outs []store.Outcome, _ time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, o := range outs {
		if !j.pending[o.Rcpt] {
			continue
		}
		delete(j.pending, o.Rcpt)
		if o.State == store.Delivered {
			j.counts.Delivered++
		} else {
			j.counts.Failed++
		}
	}
	return nil
}

func (j *memJournal) DeliveryCounts(context.Context, string) (store.Counts, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	c := j.counts
	c.Pending = len(j.pending)
	return c, nil
}

func (j *memJournal) FinishDelivery(ctx context.Context, id, _ string, _ time.Time) (store.Counts, error) {
	return j.DeliveryCounts(ctx, id)
}

// capturer is a relay that takes every copy and keeps the one it was given.
type capturer struct {
	rcpts []string
	body  []byte
}

func (c *capturer) Send(_ context.Context, _ string, rcpts []string, body func() io.Reader, report func([]relay.Result)) {
	var b bytes.Buffer
	if _, err := b.ReadFrom(body()); err != nil {
		rs := make([]relay.Result, len(rcpts))
		for i, r := range rcpts {
			rs[i] = relay.Result{Rcpt: r, Err: &relay.Error{Temporary: true, Message: "reading the copy: " + err.Error()}}
		}
		report(rs)
		return
	}
	c.rcpts, c.body = append([]string(nil), rcpts...), b.Bytes()
	rs := make([]relay.Result, len(rcpts))
	for i, r := range rcpts {
		rs[i] = relay.Result{Rcpt: r}
	}
	report(rs)
}

// The dry run is the only process at its journal: every lease is its own,
// and no other delivery of the message exists.

func (j *memJournal) MessageSpent(context.Context, string, string, string) (bool, error) {
	return false, nil
}

func (j *memJournal) AcquireLease(context.Context, string, string, time.Time, time.Time) (bool, error) {
	return true, nil
}

func (j *memJournal) RenewLease(context.Context, string, string, time.Time) error { return nil }
func (j *memJournal) ReleaseLease(context.Context, string, string) error          { return nil }
