// Package bounce handles mail to the lists' bounce addresses and tells
// senders what became of their messages.
//
// The copies of a delivery carry its bounce tag in their envelope sender
// (policy.BounceEnvelope), so a delivery status notification comes back
// to board-bounces+TAG@example.org. Handle reads it (package dsn) and
// records each recipient's failure, delay or late success on the delivery
// the tag names — only there, and only for that delivery's recipients: an
// unknown or forged tag, or a recipient that was not in the delivery,
// changes nothing. Mail to a bounce address that is no recognisable
// notification (a person writing to it, a bounce without a tag) is
// forwarded to the list's bounce_forward mailbox with the null envelope
// sender, or dropped with a log line; auto-replies are dropped. Nothing
// that arrives at a bounce address is ever redistributed to a list.
//
// Reports (reports.go) are the sender's side: one mail after the fan-out,
// at most one follow-up when bounces arrive later.
package bounce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/dsn"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/store"
)

// Store is what handling bounces needs; *store.DB satisfies it.
type Store interface {
	DeliveryByTag(ctx context.Context, tag string) (store.Delivery, error)
	RecordBounces(ctx context.Context, id string, bs []store.Bounce, now time.Time, followUp time.Duration) ([]store.Bounce, error)
}

// Observer counts bounces (metrics): list, and kind "failed", "delayed",
// "delivered", "ignored" (a notification that changed nothing),
// "auto_reply", "forwarded", "dropped".
type Observer interface {
	Bounce(list, kind string)
}

// Options configure a Handler.
type Options struct {
	Store    Store
	Logger   *slog.Logger
	Now      func() time.Time
	Observer Observer
}

// Handler handles mail to bounce addresses. It is safe for concurrent use.
type Handler struct {
	opts Options
	log  *slog.Logger
}

// New returns a handler.
func New(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	return &Handler{opts: opts, log: opts.Logger}
}

type noObserver struct{}

func (noObserver) Bounce(string, string) {}

// Message is one message to a bounce address.
type Message struct {
	From    string // envelope sender ("" for the null sender of DSNs)
	QueueID string
	Body    io.ReaderAt
	Size    int64
}

func (m Message) reader() io.Reader { return io.NewSectionReader(m.Body, 0, m.Size) }

// Result is what became of a message to a bounce address.
type Result string

// Results.
const (
	Recorded  Result = "recorded"   // a notification recorded on its delivery
	Ignored   Result = "ignored"    // a notification that changed nothing (unknown tag, stranger recipients)
	AutoReply Result = "auto_reply" // dropped
	Forwarded Result = "forwarded"  // to the list's bounce_forward
	Dropped   Result = "dropped"    // no bounce_forward configured
)

// Handle handles m, sent to list l's bounce address with tag ("" for the
// bare address). An error is temporary (the store, the relay): the
// endpoint answers 4xx and Postfix hands the message over again.
func (h *Handler) Handle(ctx context.Context, set *delivery.Settings, l *policy.List, tag string, m Message) (Result, error) {
	n := dsn.Parse(m.reader())
	list := l.Addr.String()
	switch {
	case n.Kind == dsn.Report && tag != "":
		return h.record(ctx, set, l, tag, m, n)
	case n.Kind == dsn.AutoReply:
		h.log.Info("auto-reply to a bounce address dropped", "list", list, "queue_id", m.QueueID, "sender", m.From)
		h.opts.Observer.Bounce(list, string(AutoReply))
		return AutoReply, nil
	}
	// A person, or a bounce of mail we did not tag: the owner's to read.
	what := "mail to a bounce address that is no delivery report"
	if n.Kind == dsn.Report {
		what = "delivery report to the bare bounce address (no delivery tag: it names no delivery)"
	}
	if l.BounceForward.IsZero() {
		h.log.Info(what+" dropped (no bounce_forward)",
			"list", list, "queue_id", m.QueueID, "sender", m.From, "kind", string(n.Kind))
		h.opts.Observer.Bounce(list, string(Dropped))
		return Dropped, nil
	}
	if err := h.forward(ctx, set, l, m); err != nil {
		return "", err
	}
	h.log.Info(what+" forwarded", "list", list, "queue_id", m.QueueID, "sender", m.From,
		"to", l.BounceForward.String())
	h.opts.Observer.Bounce(list, string(Forwarded))
	return Forwarded, nil
}

func (h *Handler) record(ctx context.Context, set *delivery.Settings, l *policy.List, tag string, m Message, n dsn.Notification) (Result, error) {
	list := l.Addr.String()
	d, err := h.opts.Store.DeliveryByTag(ctx, tag)
	switch {
	case errors.Is(err, store.ErrNoDelivery) || err == nil && d.List != l.Addr.Key():
		// A forged or stale tag, or one sent to another list's bounce
		// address: nobody's delivery changes.
		h.log.Warn("delivery report with an unknown bounce tag ignored", "list", list, "queue_id", m.QueueID, "format", n.Format)
		h.opts.Observer.Bounce(list, string(Ignored))
		return Ignored, nil
	case err != nil:
		return "", err
	}
	bs := make([]store.Bounce, 0, len(n.Recipients))
	for _, r := range n.Recipients {
		b := store.Bounce{Rcpt: r.Address, Status: r.Status, Detail: r.Diagnostic}
		switch r.Action {
		case dsn.Failed:
			b.Kind = store.BounceFailed
		case dsn.Delayed:
			b.Kind = store.BounceDelayed
		default:
			b.Kind = store.BounceDelivered
		}
		bs = append(bs, b)
		if r.Original != "" && r.Original != r.Address {
			// The receiving system may name the address it rewrote the
			// recipient to; the original is the one we sent to.
			o := b
			o.Rcpt = r.Original
			bs = append(bs, o)
		}
	}
	applied, err := h.opts.Store.RecordBounces(ctx, d.ID, bs, h.opts.Now(), set.ReportWindow)
	if err != nil {
		return "", err
	}
	if len(applied) == 0 {
		h.log.Warn("delivery report changed nothing: it names no recipient of the delivery in a state it could change",
			"list", list, "delivery", d.ID, "queue_id", m.QueueID, "format", n.Format, "recipients", len(n.Recipients))
		h.opts.Observer.Bounce(list, string(Ignored))
		return Ignored, nil
	}
	for _, b := range applied {
		kind := map[store.BounceKind]string{store.BounceFailed: "failed", store.BounceDelayed: "delayed", store.BounceDelivered: "delivered"}[b.Kind]
		h.opts.Observer.Bounce(list, kind)
		h.log.Info("bounce recorded", "list", list, "delivery", d.ID, "recipient", b.Rcpt, "kind", kind,
			"status", b.Status, "diagnostic", b.Detail, "format", n.Format)
	}
	return Recorded, nil
}

// forward sends m unchanged to l's bounce_forward mailbox with the null
// envelope sender, so that a failure to deliver it comes back to nobody.
func (h *Handler) forward(ctx context.Context, set *delivery.Settings, l *policy.List, m Message) error {
	var (
		failure *relay.Error
		got     bool
	)
	set.Relay.Send(ctx, "", []string{l.BounceForward.String()}, m.reader, func(rs []relay.Result) {
		for _, r := range rs {
			got = true
			if r.Err != nil {
				failure = r.Err
			}
		}
	})
	switch {
	case failure != nil && !failure.Temporary:
		// The owner's mailbox refuses it: retrying would not help.
		h.log.Warn("forwarding mail to a bounce address refused", "list", l.Addr.String(), "to", l.BounceForward.String(), "err", failure.Error())
		return nil
	case failure != nil:
		return fmt.Errorf("forwarding to %s: %s", l.BounceForward, failure.Error())
	case !got:
		return fmt.Errorf("forwarding to %s: the relay reported nothing", l.BounceForward)
	}
	return nil
}

// String names a result for the log.
func (r Result) String() string { return string(r) }
