package lmtp

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/rewrite"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

type envelope struct {
	from    string          // MAIL FROM as given
	sender  address.Address // parsed; zero for the null sender
	queueID string          // Postfix's, from the topmost Received field; "" when unknown
}

// deliveryID identifies one received message for one restricted address:
// the same message handed over again by Postfix gets the same id, so the
// journal recognises it.
func deliveryID(list address.Address, from string, msgSum [sha256.Size]byte) string {
	h := sha256.New()
	h.Write([]byte(list.Key()))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(from)))
	h.Write([]byte{0})
	h.Write(msgSum[:])
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// outcome is what one delivery attempt ended with, for the log line.
type outcome struct {
	id       string
	verdict  policy.Verdict
	tokenID  string
	counts   store.Counts
	total    int
	resumed  bool
	reply    *smtp.SMTPError // nil: 250
	err      error
	finished bool
	gaveUp   int // recipients given up on (give_up_after) by this attempt
}

// deliver runs one delivery and returns the reply for its recipients (nil
// for 250).
func (s *Server) deliver(cfg *config.Config, env envelope, sp *spooled, g *group) *smtp.SMTPError {
	start := s.opts.Now()
	ctx, cancel := context.WithTimeout(s.base, s.opts.DeliveryTimeout)
	defer cancel()

	o := outcome{id: deliveryID(g.list.Addr, env.from, sp.sum)}
	unlock := s.locks.lock(o.id)
	defer unlock()
	defer s.observeDelivery(&o, time.Now())
	s.run(ctx, cfg, env, sp, g, &o)

	attrs := []any{
		"delivery", o.id, "queue_id", env.queueID, "list", g.list.Addr.String(), "sender", env.from,
		"token_id", o.tokenID, "recipients", o.total, "delivered", o.counts.Delivered,
		"failed", o.counts.Failed, "pending", o.counts.Pending, "duration", s.opts.Now().Sub(start).Round(time.Millisecond),
	}
	switch {
	case o.reply == nil:
		attrs = append(attrs, "result", "250", "resumed", o.resumed, "complete", o.finished)
		s.log.Info("delivery", attrs...)
	case o.err != nil:
		attrs = append(attrs, "result", o.reply.Code, "err", o.err)
		s.log.Warn("delivery", attrs...)
	case o.verdict.OK():
		// Recipients left pending (the relay failed temporarily): not a
		// refusal, Postfix hands the message over again.
		attrs = append(attrs, "result", o.reply.Code, "resumed", o.resumed)
		s.log.Warn("delivery deferred", attrs...)
	default:
		attrs = append(attrs, "result", o.reply.Code, "reason", o.verdict.Reason.String())
		s.log.Info("delivery refused", attrs...)
	}
	return o.reply
}

func (s *Server) run(ctx context.Context, cfg *config.Config, env envelope, sp *spooled, g *group, o *outcome) {
	// pending is known without asking the store when this hand-over began
	// the delivery: all its recipients (for a large list, re-reading them
	// would double the memory of the fan-out).
	var pending []string
	d, err := s.opts.Store.Delivery(ctx, o.id)
	switch {
	case err == nil:
		o.resumed = true
	case errors.Is(err, store.ErrNoDelivery):
		var ok bool
		if d, pending, ok = s.begin(ctx, cfg, env, sp, g, o); !ok {
			return
		}
	default:
		o.err, o.reply = err, errTempLocal
		return
	}
	o.tokenID = d.TokenID
	if !d.Completed.IsZero() {
		o.finished = true
		return // already done: Postfix did not get our 250 the last time
	}
	if pending == nil {
		if pending, err = s.opts.Store.PendingRecipients(ctx, o.id); err != nil {
			o.err, o.reply = err, errTempLocal
			return
		}
	}
	o.total = len(pending)
	if len(pending) > 0 && !s.expired(cfg, d) {
		if err := s.send(ctx, cfg, sp, d, pending, g); err != nil {
			o.err, o.reply = err, errTempLocal
			return
		}
	}
	s.settle(ctx, cfg, d, o)
}

// begin validates a delivery the journal does not know yet and, when the
// token is good, spends it and records the delivery with its recipients,
// which it returns as the pending ones (nil: read them from the journal).
func (s *Server) begin(ctx context.Context, cfg *config.Config, env envelope, sp *spooled, g *group, o *outcome) (store.Delivery, []string, bool) {
	facts, loop, err := readFacts(sp, cfg, g)
	switch {
	case errors.Is(err, mailheader.ErrTooLarge):
		o.verdict = policy.Verdict{Reason: policy.Malformed, List: g.list.Addr.String()}
	case err != nil:
		o.err, o.reply = err, errTempLocal
		return store.Delivery{}, nil, false
	case loop:
		o.verdict = policy.Verdict{Reason: policy.Loop, List: g.list.Addr.String()}
	default:
		facts.EnvelopeSender = env.sender
		facts.Now = s.opts.Now()
		if s.throttled(env, facts) {
			o.verdict = policy.Verdict{Reason: policy.Throttled, List: g.list.Addr.String()}
			break
		}
		var rec *token.Record
		if o.verdict, rec = policy.Check(ctx, s.opts.Store, facts); o.verdict.OK() {
			// The copy is scrubbed of this token: keep it, so that send
			// does not read the whole message again to find it.
			g.token = facts.Token
			return s.record(ctx, env, g, rec, o)
		}
		s.noteGuess(env, o.verdict)
	}
	o.reply = replyOf(o.verdict)
	if o.verdict.Temporary() {
		o.err = o.verdict.Cause
	}
	return store.Delivery{}, nil, false
}

func (s *Server) record(ctx context.Context, env envelope, g *group, rec *token.Record, o *outcome) (store.Delivery, []string, bool) {
	o.tokenID = rec.ID
	rcpts := recipientsOf(g.list, rec)
	if len(rcpts) == 0 {
		// Possible only when a reload emptied the list after the token was
		// issued: keep the message queued until the list is fixed.
		o.err, o.reply = fmt.Errorf("%s has no recipients", g.list.Addr), errTempLocal
		return store.Delivery{}, nil, false
	}
	d, existing, err := s.opts.Store.BeginDelivery(ctx, store.Delivery{
		ID: o.id, List: g.list.Addr.Key(), TokenID: rec.ID, Sender: env.from,
		HideSender: g.list.HideSender || rec.HideSender, Created: s.opts.Now(),
	}, rcpts)
	if err != nil {
		// The token may have been used up by a concurrent delivery since
		// the check: that, too, is a verdict.
		o.verdict = policy.FromSpendError(g.list.Addr.String(), unwrapSpend(err))
		o.reply = replyOf(o.verdict)
		if o.verdict.Temporary() {
			o.err = err
		}
		return store.Delivery{}, nil, false
	}
	if existing {
		return d, nil, true
	}
	return d, rcpts, true
}

// unwrapSpend keeps a token refusal recognisable and anything else opaque.
func unwrapSpend(err error) error {
	for _, e := range []error{token.ErrUsedUp, token.ErrRevoked, token.ErrExpired, token.ErrNotFound} {
		if errors.Is(err, e) {
			return e
		}
	}
	return err
}

func (s *Server) expired(cfg *config.Config, d store.Delivery) bool {
	return s.opts.Now().Sub(d.Created) > cfg.LMTP.GiveUpAfter.D()
}

// settle completes the delivery when nothing is pending or it is too old,
// and otherwise answers 4xx so that Postfix hands it over again.
func (s *Server) settle(ctx context.Context, cfg *config.Config, d store.Delivery, o *outcome) {
	now := s.opts.Now()
	counts, err := s.opts.Store.DeliveryCounts(ctx, d.ID)
	if err != nil {
		o.err, o.reply = err, errTempLocal
		return
	}
	detail := ""
	if counts.Pending > 0 {
		if !s.expired(cfg, d) {
			o.counts = counts
			o.reply = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1},
				Message: fmt.Sprintf("The list's relay did not take every copy yet (%d recipients pending); will retry", counts.Pending)}
			return
		}
		detail = "gave up after " + cfg.LMTP.GiveUpAfter.String()
		o.gaveUp = counts.Pending
	}
	if o.counts, err = s.opts.Store.FinishDelivery(ctx, d.ID, detail, now); err != nil {
		o.err, o.reply = err, errTempLocal
		return
	}
	o.finished = true
}

// send rewrites the message into a second spool file and fans it out to
// the pending recipients, recording outcomes as the relay reports them.
func (s *Server) send(ctx context.Context, cfg *config.Config, sp *spooled, d store.Delivery, pending []string, g *group) error {
	tok := g.token
	if tok == "" { // a resumed delivery: find the token spent at its start
		f, err := cfg.Finder().Find(sp.reader())
		if err != nil && !errors.Is(err, mailheader.ErrTooLarge) {
			return fmt.Errorf("finding the token again: %w", err)
		}
		tok = f.Token
	}
	out, err := os.CreateTemp(cfg.SpoolDir(), spoolPrefix+"copy-*")
	if err != nil {
		return fmt.Errorf("creating the copy's spool file: %w", err)
	}
	defer func() { out.Close(); os.Remove(out.Name()) }()
	w := bufio.NewWriterSize(out, 64<<10)
	res, err := rewrite.Write(w, sp.reader(), copyFor(cfg, g.list, d, tok))
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return fmt.Errorf("writing the copy: %w", err)
	}
	body := func() io.Reader {
		return io.MultiReader(strings.NewReader(res.Signature), io.NewSectionReader(out, 0, res.Size))
	}
	j := newJournal(ctx, s.opts.Store, d.ID, s.opts.Now, s.log)
	s.opts.Relay().Send(ctx, g.list.Bounce.String(), pending, body, s.observed(j.report))
	return j.close()
}

// recipientsOf expands a delivery's recipients: the token's own, or else
// the list's (shared, read-only). They are distinct, ignoring case, as the
// journal and the relay expect: the list's are deduplicated when the
// configuration is loaded, the token's here.
func recipientsOf(l *config.List, rec *token.Record) []string {
	if len(rec.Recipients) == 0 {
		return l.Members
	}
	seen := make(map[string]bool, len(rec.Recipients))
	out := make([]string, 0, len(rec.Recipients))
	for _, r := range rec.Recipients {
		if k := strings.ToLower(r); !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out
}

// copyFor describes the copy of delivery d. Everything in it derives from
// the journal (id, creation time, hide-sender), so that every hand-over of
// a delivery — and a preview — produces the same copy.
func copyFor(cfg *config.Config, l *config.List, d store.Delivery, tok string) rewrite.Copy {
	return rewrite.Copy{
		List: l, Lists: cfg.ListAddresses(), Delimiter: cfg.RecipientDelimiter,
		HideSender: d.HideSender, Finder: cfg.Finder(), Token: tok,
		MessageID: "<" + d.ID + "@" + cfg.Hostname + ">", Date: d.Created,
		Key: cfg.KeyFor(l.Addr.Domain),
	}
}

// readFacts reads what the policy needs from the spooled header, and
// whether the message carries this list's loop marker.
func readFacts(sp *spooled, cfg *config.Config, g *group) (policy.Facts, bool, error) {
	f := policy.Facts{List: g.list.Addr, Token: g.token}
	br := bufio.NewReaderSize(sp.reader(), 64<<10)
	h, err := mailheader.Read(br)
	if err != nil {
		return f, false, err
	}
	if policy.IsLoop(h.Values(policy.LoopHeader), g.list.Addr) {
		return f, true, nil
	}
	f.HeaderFrom = fromAddresses(h.Get("From"))
	if f.Token == "" {
		finder := cfg.Finder()
		if f.Token = finder.InHeader(&h); f.Token == "" {
			if f.Token, err = finder.InBody(h.Get("Content-Type"), br); err != nil {
				return f, false, err
			}
		}
	}
	return f, false, nil
}

// fromAddresses parses the From field for the sender binding; garbage
// yields none (the envelope sender may still match).
func fromAddresses(v string) []address.Address {
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}}
	list, err := p.ParseList(v)
	if err != nil {
		return nil
	}
	var out []address.Address
	for _, a := range list {
		if pa, err := address.Parse(a.Address); err == nil {
			out = append(out, pa)
		}
	}
	return out
}

// replyOf turns a verdict into the wire reply; this is the one place the
// endpoint does so.
func replyOf(v policy.Verdict) *smtp.SMTPError {
	r := v.Reply()
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCode(r.Enhanced), Message: r.Text}
}
