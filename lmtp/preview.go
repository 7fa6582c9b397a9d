package lmtp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/rewrite"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// Preview is what the endpoint would do with a message for one restricted
// address, computed without spending the token, recording anything or
// sending anything: the dry run of `restrictedmail test`.
type Preview struct {
	DeliveryID string
	Verdict    policy.Verdict
	Reply      string   // the LMTP reply the recipient would get
	TokenID    string   // "" when no valid token was found
	Recipients []string // whom the copy would go to (verdict OK only)
	Envelope   string   // the copy's envelope sender
	Copy       []byte   // the signed copy (verdict OK only)
}

// PreviewDelivery judges msg, sent by from to rcpt, as the endpoint would on
// its first hand-over at time now, and writes the copy it would send. It
// takes the same steps as a delivery — the same delivery id, facts,
// policy.Check, recipients and copyFor — minus the journal and the relay.
func PreviewDelivery(ctx context.Context, cfg *config.Config, tokens policy.Tokens, from, rcpt string, msg []byte, now time.Time) (Preview, error) {
	a, err := address.Parse(rcpt)
	if err != nil {
		return Preview{}, fmt.Errorf("recipient %q: %v", rcpt, err)
	}
	l, _ := cfg.ListFor(a)
	if l == nil {
		return Preview{Reply: errNotRestricted.Error()}, nil
	}
	var sender address.Address
	if from != "" {
		if sender, err = address.Parse(from); err != nil {
			return Preview{}, fmt.Errorf("sender %q: %v", from, err)
		}
	}
	g := &group{list: l}
	if !l.Addr.Equal(a) {
		_, g.token = token.Subaddress(a, cfg.RecipientDelimiter)
	}
	sp := &spooled{r: bytes.NewReader(msg), size: int64(len(msg)), sum: sha256.Sum256(msg)}
	p := Preview{DeliveryID: deliveryID(l.Addr, from, sp.sum), Envelope: l.Bounce.String()}

	facts, loop, err := readFacts(sp, cfg, g)
	switch {
	case errors.Is(err, mailheader.ErrTooLarge):
		p.Verdict = policy.Verdict{Reason: policy.Malformed, List: l.Addr.String()}
	case err != nil:
		return Preview{}, err
	case loop:
		p.Verdict = policy.Verdict{Reason: policy.Loop, List: l.Addr.String()}
	default:
		facts.EnvelopeSender, facts.Now = sender, now
		var rec *token.Record
		if p.Verdict, rec = policy.Check(ctx, tokens, facts); p.Verdict.OK() {
			p.TokenID, p.Recipients = rec.ID, recipientsOf(l, rec)
			d := store.Delivery{ID: p.DeliveryID, HideSender: l.HideSender || rec.HideSender, Created: now.UTC().Truncate(time.Second)}
			var out bytes.Buffer
			res, err := rewrite.Write(&out, sp.reader(), copyFor(cfg, l, d, facts.Token))
			if err != nil {
				return Preview{}, fmt.Errorf("writing the copy: %w", err)
			}
			p.Copy = append([]byte(res.Signature), out.Bytes()...)
		}
	}
	p.Reply = p.Verdict.Reply().String()
	return p, nil
}
