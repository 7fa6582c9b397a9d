// Package delivery is the delivery engine behind the LMTP endpoint and the
// dry run: for the recipients of one restricted address it authorises the
// message (policy's decision), records the delivery in the journal while
// spending its token, fans the rewritten, signed copy out through the
// relay, and settles — exactly once per recipient, however often Postfix
// hands the same message over.
//
// The engine answers with values: Deliver returns an Outcome that the
// adapter turns into its reply. The dry run is the same engine with a
// journal that records nothing and a sender that captures (dryrun.go).
package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/reply"
	"github.com/restrictedmail/restrictedmail/rewrite"
	"github.com/restrictedmail/restrictedmail/store"
)

// Store is what the engine needs from a store: token lookup and the
// delivery journal. *store.DB satisfies it.
type Store interface {
	policy.Tokens
	Delivery(ctx context.Context, id string) (store.Delivery, error)
	BeginDelivery(ctx context.Context, d store.Delivery, rcpts []string) (store.Delivery, bool, error)
	PendingRecipients(ctx context.Context, id string) ([]string, error)
	RecordOutcomes(ctx context.Context, id string, outs []store.Outcome, now time.Time) error
	FinishDelivery(ctx context.Context, id, detail string, now time.Time) (store.Counts, error)
	DeliveryCounts(ctx context.Context, id string) (store.Counts, error)
	// Several hosts on one store (lease.go).
	policy.Journal
	AcquireLease(ctx context.Context, id, owner string, now, until time.Time) (bool, error)
	RenewLease(ctx context.Context, id, owner string, until time.Time) error
	ReleaseLease(ctx context.Context, id, owner string) error
}

// Sender fans one message out; *relay.Client satisfies it.
type Sender interface {
	Send(ctx context.Context, from string, rcpts []string, body func() io.Reader, report func([]relay.Result))
}

// Settings are what one configuration generation gives a delivery. A
// transaction uses one Settings from MAIL to its last reply, so that a
// reload never sends with the new relay and the old lists.
type Settings struct {
	Rules       *policy.Rules
	Relay       Sender
	Hostname    string                  // domain of the Message-ID of a message that has none
	Keys        map[string]*rewrite.Key // lower-cased domain → DKIM key
	SpoolDir    string                  // where the copy is written while it is sent
	GiveUpAfter time.Duration           // a delivery older than this settles with its pending recipients failed
	// Lease is how long another host sharing the store waits for this one
	// to finish a delivery it fans out before taking it over (renewed every
	// third of it while sending). Zero: DefaultLease.
	Lease time.Duration
	// ReportWindow is how long the follow-up report on bounces that arrive
	// after a delivery's first report waits for more of them.
	ReportWindow time.Duration
}

// KeyFor returns the DKIM key for domain, or nil.
func (s *Settings) KeyFor(domain string) *rewrite.Key { return s.Keys[strings.ToLower(domain)] }

// Options configure an Engine.
type Options struct {
	Store  Store
	Logger *slog.Logger     // the delivery log lines; nil: none
	Now    func() time.Time // nil: time.Now
	// Timeout bounds one delivery's fan-out, so that the endpoint answers
	// before Postfix's lmtp_data_done_timeout (600s) gives up on it and
	// hands the message over again while it is still sending. Zero: 8m.
	Timeout time.Duration
	// Observer is told how deliveries end (metrics); nil: none.
	Observer Observer
	// Guard slows down token guessing by envelope sender (shared with the
	// milter); nil: no limit. Postfix is the LMTP client, so the client
	// address says nothing here.
	Guard policy.Guard
	// LeaseOwner names this process in the leases of the deliveries it
	// fans out (lease.go); "": NewLeaseOwner().
	LeaseOwner string
}

// Engine runs deliveries. It is safe for concurrent use.
type Engine struct {
	opts  Options
	log   *slog.Logger
	obs   Observer
	locks keyedMutex
	owner string // of the leases
}

// New returns an engine.
func New(opts Options) *Engine {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 8 * time.Minute
	}
	if opts.LeaseOwner == "" {
		opts.LeaseOwner = NewLeaseOwner()
	}
	e := &Engine{opts: opts, log: opts.Logger, obs: opts.Observer, owner: opts.LeaseOwner}
	if e.obs == nil {
		e.obs = noObserver{}
	}
	return e
}

// Message is one received message, as the adapter spooled it.
type Message struct {
	From    string          // MAIL FROM as given
	Sender  address.Address // parsed; zero for the null sender
	QueueID string          // Postfix's, for the log; "" when unknown
	Body    io.ReaderAt
	Size    int64
	Sum     [sha256.Size]byte // SHA-256 of the bytes: the same message handed over again has the same
}

func (m Message) reader() *io.SectionReader { return io.NewSectionReader(m.Body, 0, m.Size) }

// ID identifies one received message for one restricted address: the same
// message handed over again by Postfix gets the same id, so the journal
// recognises it.
func ID(list address.Address, from string, msgSum [sha256.Size]byte) string {
	h := sha256.New()
	h.Write([]byte(list.Key()))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(from)))
	h.Write([]byte{0})
	h.Write(msgSum[:])
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Outcome is how one delivery attempt ended.
type Outcome struct {
	ID      string
	Verdict policy.Verdict // the decision, when this attempt made one (a new delivery)
	TokenID string
	Counts  store.Counts
	Total   int  // recipients this attempt sent to
	Resumed bool // the journal knew the delivery: Postfix handed it over again
	// Reply is the answer for the group's recipients; nil is 250.
	Reply    *reply.Reply
	Err      error // the internal error behind a 4xx, for the log
	Finished bool  // the delivery is complete in the journal
	// DuplicateOf is the delivery of the same message (list, token,
	// Message-ID) that arrived with other bytes (through another MX host):
	// this attempt continued that one, or found it complete.
	DuplicateOf string
	// Busy is the process that holds the delivery's lease: it distributes
	// the message now, so this attempt sent nothing and answered 451.
	Busy     string
	GaveUp   int // recipients given up on (give_up_after) by this attempt
	Duration time.Duration
}

func failed(err error) Outcome {
	r := reply.TempLocal
	return Outcome{Reply: &r, Err: err}
}

// Deliver runs one delivery of m to group g and returns its outcome.
func (e *Engine) Deliver(ctx context.Context, set *Settings, m Message, g policy.Group) Outcome {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	id := ID(g.List.Addr, m.From, m.Sum)
	unlock := e.locks.lock(id)
	defer unlock()

	o := e.attempt(ctx, set, m, g, id)
	o.ID, o.Duration = id, time.Since(start)
	e.observe(o)
	e.logOutcome(m, g, o)
	return o
}

func (e *Engine) attempt(ctx context.Context, set *Settings, m Message, g policy.Group, id string) Outcome {
	d, err := e.opts.Store.Delivery(ctx, id)
	var (
		pending []string // known without asking the store when this hand-over began the delivery
		tok     string   // the token spent, to scrub from the copy
		verdict policy.Verdict
		resumed bool
		leased  bool // BeginDelivery gave the new delivery our lease
	)
	switch {
	case err == nil:
		resumed = true
	case errors.Is(err, store.ErrNoDelivery):
		b := e.begin(ctx, set, m, g, id)
		if b.refusal != nil {
			return *b.refusal
		}
		d, pending, tok, verdict, leased = b.d, b.pending, b.token, b.verdict, b.pending != nil
		resumed = b.pending == nil
	default:
		return failed(err)
	}
	o := Outcome{Verdict: verdict, TokenID: d.TokenID, Resumed: resumed}
	if d.ID != id {
		// The same message with other bytes: serialise with this
		// process's own attempts at that delivery, then see where it
		// stands now.
		o.DuplicateOf = d.ID
		unlock := e.locks.lock(d.ID)
		defer unlock()
		if d, err = e.opts.Store.Delivery(ctx, d.ID); err != nil {
			return withFailure(o, err)
		}
	}
	if !d.Completed.IsZero() {
		o.Finished = true
		return o // already done: Postfix did not get our 250 the last time, or another host did it
	}
	lease := set.lease()
	if !leased {
		now := e.opts.Now()
		ok, err := e.opts.Store.AcquireLease(ctx, d.ID, e.owner, now, now.Add(lease))
		if err != nil {
			return withFailure(o, err)
		}
		if !ok {
			return e.busy(ctx, d.ID, o)
		}
	}
	h := e.hold(ctx, lease, d.ID)
	finished := false // FinishDelivery released the lease
	defer func() { e.release(ctx, h, d.ID, !finished) }()
	if pending == nil {
		if pending, err = e.opts.Store.PendingRecipients(ctx, d.ID); err != nil {
			return withFailure(o, err)
		}
	}
	o.Total = len(pending)
	if len(pending) > 0 && !e.expired(set, d) {
		err := e.send(ctx, h.ctx, set, m, d, pending, g, tok)
		if lost := h.lost(); lost != nil {
			// Recorded results are kept; the new owner sends the rest.
			return withFailure(o, lost)
		}
		if err != nil {
			return withFailure(o, err)
		}
	}
	o = e.settle(ctx, set, d, o)
	finished = o.Finished
	return o
}

// busy answers an attempt at delivery id whose lease another process
// holds — unless the delivery completed meanwhile.
func (e *Engine) busy(ctx context.Context, id string, o Outcome) Outcome {
	d, err := e.opts.Store.Delivery(ctx, id)
	if err != nil {
		return withFailure(o, err)
	}
	if !d.Completed.IsZero() {
		o.Finished = true
		return o
	}
	r := reply.Distributing
	o.Reply, o.Busy = &r, d.LeaseOwner
	return o
}

func withFailure(o Outcome, err error) Outcome {
	f := failed(err)
	o.Reply, o.Err = f.Reply, f.Err
	return o
}

// begun is what begin found: a recorded delivery with its recipients, or
// the refusal to answer with.
type begun struct {
	d       store.Delivery
	pending []string // nil: read them from the journal
	token   string
	verdict policy.Verdict
	refusal *Outcome
}

// begin authorises a delivery the journal does not know yet and, when the
// token is good, spends it and records the delivery with its recipients.
func (e *Engine) begin(ctx context.Context, set *Settings, m Message, g policy.Group, id string) begun {
	facts, err := policy.ReadFacts(m.reader(), set.Rules, g)
	if err != nil {
		o := failed(fmt.Errorf("reading the message: %w", err))
		return begun{refusal: &o}
	}
	facts.EnvelopeSender, facts.Now = m.Sender, e.opts.Now()
	facts, v := policy.Checker{Tokens: e.opts.Store, Guard: e.opts.Guard, Journal: e.opts.Store}.Check(ctx, facts, guard.SenderKey(m.From))
	if v.Tripped {
		e.log.Warn("too many unknown posting tokens: further deliveries from this sender get 450 4.7.1 for a while",
			"sender", m.From, "list", v.List)
	}
	if !v.OK() {
		return begun{refusal: refusal(v)}
	}
	rec := facts.Record
	rcpts := policy.RecipientsOf(g.List, rec)
	if len(rcpts) == 0 {
		// Possible only when a reload emptied the list after the token was
		// issued: keep the message queued until the list is fixed.
		o := failed(fmt.Errorf("%s has no recipients", g.List.Addr))
		o.Verdict, o.TokenID = v, rec.ID
		return begun{refusal: &o}
	}
	now := e.opts.Now()
	d, existing, err := e.opts.Store.BeginDelivery(ctx, store.Delivery{
		ID: id, List: g.List.Addr.Key(), TokenID: rec.ID, Sender: m.From,
		HideSender: g.List.HideSender || rec.HideSender, Created: now,
		MessageID: facts.MessageID, LeaseOwner: e.owner, LeaseUntil: now.Add(set.lease()),
		Tag: NewTag(), Report: policy.ReportOf(g.List, rec),
	}, rcpts)
	if err != nil {
		// The token may have been used up by a concurrent delivery since
		// the check: that, too, is a verdict.
		o := *refusal(policy.FromSpendError(g.List.Addr.String(), err))
		o.TokenID = rec.ID
		return begun{refusal: &o}
	}
	b := begun{d: d, token: facts.Token, verdict: v}
	if !existing {
		b.pending = rcpts
	}
	return b
}

// refusal is the outcome of a verdict that is not a pass.
func refusal(v policy.Verdict) *Outcome {
	r := v.Reply()
	o := &Outcome{Verdict: v, Reply: &r}
	if v.Temporary() {
		o.Err = v.Cause
	}
	return o
}

func (e *Engine) expired(set *Settings, d store.Delivery) bool {
	return e.opts.Now().Sub(d.Created) > set.GiveUpAfter
}

// settle completes the delivery when nothing is pending or it is too old,
// and otherwise answers 4xx so that Postfix hands it over again.
func (e *Engine) settle(ctx context.Context, set *Settings, d store.Delivery, o Outcome) Outcome {
	counts, err := e.opts.Store.DeliveryCounts(ctx, d.ID)
	if err != nil {
		return withFailure(o, err)
	}
	detail := ""
	if counts.Pending > 0 {
		if !e.expired(set, d) {
			r := reply.Pending(counts.Pending)
			o.Counts, o.Reply = counts, &r
			return o
		}
		detail = "gave up after " + set.GiveUpAfter.String()
		o.GaveUp = counts.Pending
	}
	if o.Counts, err = e.opts.Store.FinishDelivery(ctx, d.ID, detail, e.opts.Now()); err != nil {
		return withFailure(o, err)
	}
	o.Finished = true
	return o
}

// logOutcome writes the delivery's one log line.
func (e *Engine) logOutcome(m Message, g policy.Group, o Outcome) {
	attrs := []any{
		"delivery", o.ID, "queue_id", m.QueueID, "list", g.List.Addr.String(), "sender", m.From,
		"token_id", o.TokenID, "recipients", o.Total, "delivered", o.Counts.Delivered,
		"failed", o.Counts.Failed, "pending", o.Counts.Pending, "duration", o.Duration.Round(time.Millisecond),
	}
	switch {
	case o.Reply == nil && o.DuplicateOf != "":
		attrs = append(attrs, "result", "250", "duplicate_of", o.DuplicateOf, "complete", o.Finished)
		e.log.Info("delivery of a duplicate", attrs...)
	case o.Reply == nil:
		attrs = append(attrs, "result", "250", "resumed", o.Resumed, "complete", o.Finished)
		e.log.Info("delivery", attrs...)
	case o.Busy != "":
		attrs = append(attrs, "result", o.Reply.Code, "duplicate_of", o.DuplicateOf, "lease_owner", o.Busy)
		e.log.Info("delivery deferred: another host distributes it", attrs...)
	case o.Err != nil:
		attrs = append(attrs, "result", o.Reply.Code, "err", o.Err)
		e.log.Warn("delivery", attrs...)
	case o.Verdict.OK() || o.Resumed:
		// Recipients left pending (the relay failed temporarily): not a
		// refusal, Postfix hands the message over again.
		attrs = append(attrs, "result", o.Reply.Code, "resumed", o.Resumed)
		e.log.Warn("delivery deferred", attrs...)
	default:
		attrs = append(attrs, "result", o.Reply.Code, "reason", o.Verdict.Reason.String())
		e.log.Info("delivery refused", attrs...)
	}
}

// tokenOf finds the token a resumed delivery spent at its start, to scrub
// it from the copy: the group's subaddress token, else the message's.
func tokenOf(rules *policy.Rules, m Message, g policy.Group) (string, error) {
	if g.Token != "" {
		return g.Token, nil
	}
	f, err := rules.Finder.Find(m.reader())
	if err != nil && !errors.Is(err, mailheader.ErrTooLarge) {
		return "", fmt.Errorf("finding the token again: %w", err)
	}
	return f.Token, nil
}
