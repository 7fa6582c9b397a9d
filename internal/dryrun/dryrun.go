// Package dryrun judges a message the way `serve` would, without spending
// a token, recording anything or sending anything: `restrictedmail test`.
// The milter's verdict comes from the real milter code, run in this
// process on a loopback listener and driven by go-milter's client as
// Postfix would drive it; the LMTP verdict, the recipients and the signed
// copy come from the delivery engine itself (delivery.DryRun: the engine
// with a journal that records nothing and a relay that only captures).
// Recipients are resolved and grouped by the same code as the endpoint's.
// Both only read the store.
package dryrun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/internal/milterclient"
	"github.com/restrictedmail/restrictedmail/milter"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/reply"
)

// Report is the outcome of a dry run.
type Report struct {
	From   string
	Rcpts  []string
	Milter *milterclient.Verdict // nil when milter.listen is "" (Postfix does not ask)
	// Deliveries holds one preview per restricted address among the
	// recipients the milter let through (board@ and board+token@ are one
	// delivery, as in LMTP).
	Deliveries []Delivery
	Ordinary   []string // recipients that are no restricted address
}

// Delivery is the LMTP endpoint's dry run for one restricted address.
type Delivery struct {
	Rcpt string // the first recipient of the group judged
	delivery.Preview
}

// Pass reports whether the message would be accepted at SMTP time, for
// every recipient, and redistributed to every restricted address.
func (r Report) Pass() bool {
	if r.Milter != nil && (!r.Milter.Accepted || len(r.Milter.Refused) > 0) {
		return false
	}
	for _, d := range r.Deliveries {
		if !d.Verdict.OK() {
			return false
		}
	}
	return true
}

// Run judges msg, from from to rcpts, at time now. msg is normalised to
// CRLF line endings, as it travels over SMTP and LMTP.
func Run(ctx context.Context, cfg *config.Config, tokens policy.Tokens, from string, rcpts []string, msg []byte, now time.Time) (Report, error) {
	if len(rcpts) == 0 {
		return Report{}, errors.New("no recipient")
	}
	msg = crlf(msg)
	r := Report{From: from, Rcpts: rcpts}
	rules := generation.Rules(cfg)
	if cfg.Milter.Listen != "" {
		v, err := askMilter(ctx, cfg, rules, tokens, from, rcpts, msg, now)
		if err != nil {
			return Report{}, err
		}
		r.Milter = &v
	}
	var resolved []policy.Recipient
	for _, rcpt := range rcpts {
		rc, err := rules.Resolve(rcpt)
		switch {
		case err != nil:
			return Report{}, fmt.Errorf("recipient %q: %v", rcpt, err)
		case rc.List == nil:
			r.Ordinary = append(r.Ordinary, rcpt)
		case r.Milter != nil && r.Milter.Refused[rcpt] != "":
			// Postfix refused it at RCPT: the endpoint never sees it.
		default:
			resolved = append(resolved, rc)
		}
	}
	var sender address.Address
	if from != "" {
		var err error
		if sender, err = address.Parse(from); err != nil {
			return Report{}, fmt.Errorf("sender %q: %v", from, err)
		}
	}
	spool, err := os.MkdirTemp("", "restrictedmail-test-")
	if err != nil {
		return Report{}, fmt.Errorf("creating a spool directory for the dry run: %w", err)
	}
	defer os.RemoveAll(spool)
	set := generation.Settings(cfg, rules, nil)
	set.SpoolDir = spool
	m := delivery.Message{From: from, Sender: sender, Body: bytes.NewReader(msg), Size: int64(len(msg)), Sum: sha256.Sum256(msg)}
	for _, g := range policy.GroupByList(resolved) {
		d := Delivery{Rcpt: g.Rcpts[0].Raw}
		if int64(len(msg)) > cfg.LMTP.MaxMessageSize {
			d.Reply = reply.TooBig(cfg.LMTP.MaxMessageSize).String()
			d.Verdict = policy.Verdict{Reason: policy.Malformed, List: g.List.Addr.String()}
		} else {
			d.Preview = delivery.DryRun(ctx, set, tokens, m, g, now)
		}
		r.Deliveries = append(r.Deliveries, d)
	}
	return r, nil
}

// askMilter runs the real milter for this configuration on a loopback port
// for the length of one conversation.
func askMilter(ctx context.Context, cfg *config.Config, rules *policy.Rules, tokens policy.Tokens, from string, rcpts []string, msg []byte, now time.Time) (milterclient.Verdict, error) {
	srv := milter.New(milter.Options{
		Rules:        func() *policy.Rules { return rules },
		Tokens:       tokens,
		Logger:       slog.New(slog.DiscardHandler),
		Now:          func() time.Time { return now },
		ReadTimeout:  cfg.Milter.ReadTimeout.D(),
		WriteTimeout: cfg.Milter.WriteTimeout.D(),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return milterclient.Verdict{}, fmt.Errorf("starting the milter: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	v, err := milterclient.Ask("tcp", ln.Addr().String(), from, rcpts, msg)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = fmt.Errorf("stopping the milter: %w", serr)
	}
	if serr := <-served; serr != nil && err == nil {
		err = serr
	}
	return v, err
}

// crlf turns bare LF line endings into CRLF; CRLF stays as it is.
func crlf(msg []byte) []byte {
	if bytes.Count(msg, []byte("\n")) == bytes.Count(msg, []byte("\r\n")) {
		return msg
	}
	var b bytes.Buffer
	b.Grow(len(msg) + len(msg)/40)
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(c)
	}
	return b.Bytes()
}

// Copy markers frame each copy in the report; the copy's bytes (CRLF line
// endings) are printed between them unchanged.
const (
	BeginCopy = "----- BEGIN COPY -----\n"
	EndCopy   = "----- END COPY -----\n"
)

// Write prints the report for an administrator.
func (r Report) Write(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("dry run: nothing is sent, recorded or spent\n\n")
	ew.printf("from:     <%s>\n", r.From)
	for _, rc := range r.Rcpts {
		ew.printf("to:       <%s>\n", rc)
	}
	switch {
	case r.Milter == nil:
		ew.printf("milter:   not configured (milter.listen = \"\"): Postfix queues the message and the LMTP endpoint decides\n")
	default:
		ew.printf("milter:   %s (at %s)\n", r.Milter, r.Milter.Stage)
		for _, rc := range slices.Sorted(maps.Keys(r.Milter.Refused)) {
			ew.printf("          recipient <%s> refused at RCPT: %s\n", rc, r.Milter.Refused[rc])
		}
	}
	for _, rc := range r.Ordinary {
		ew.printf("ordinary: <%s> is no restricted address: Postfix delivers it as usual\n", rc)
	}
	for _, d := range r.Deliveries {
		ew.printf("\nlmtp <%s>: %s\n", d.Rcpt, d.Reply)
		if !d.Verdict.OK() {
			continue
		}
		ew.printf("  delivery id:    %s\n", d.DeliveryID)
		ew.printf("  token id:       %s\n", d.TokenID)
		ew.printf("  envelope from:  <%s>\n", d.Envelope)
		ew.printf("  recipients (%d):\n", len(d.Recipients))
		for _, rc := range d.Recipients {
			ew.printf("    %s\n", rc)
		}
		ew.printf("  copy (%d bytes; the DKIM signature's t= and b= change at every signing):\n", len(d.Copy))
		ew.printf("%s", BeginCopy)
		ew.write(d.Copy)
		if len(d.Copy) > 0 && d.Copy[len(d.Copy)-1] != '\n' {
			ew.printf("\n")
		}
		ew.printf("%s", EndCopy)
	}
	return ew.err
}

// errWriter keeps the first write error, so that Write checks once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func (e *errWriter) write(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}
