package lmtp

import (
	"context"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/bounce"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/reply"
)

// BounceHandler handles mail to a list's bounce address; *bounce.Handler
// satisfies it.
type BounceHandler interface {
	Handle(ctx context.Context, set *delivery.Settings, l *policy.List, tag string, m bounce.Message) (bounce.Result, error)
}

// bounceRcpt is a recipient that is a list's bounce address, with the
// delivery tag of its subaddress ("" for the bare address).
type bounceRcpt struct {
	raw  string
	list *policy.List
	tag  string
}

// handleBounces hands the message to the bounce handler once per distinct
// bounce address of the transaction and reports each recipient: 250 once
// handled (recorded, forwarded or dropped), 451 when the store or the
// relay failed, so that Postfix hands it over again.
func (ss *session) handleBounces(m delivery.Message, status smtp.StatusCollector) {
	type key struct {
		l   *policy.List
		tag string
	}
	done := map[key]error{}
	for _, b := range ss.bounces {
		k := key{b.list, b.tag}
		err, seen := done[k]
		if !seen {
			res, herr := ss.s.opts.Bounces.Handle(ss.s.base, ss.set, b.list, b.tag,
				bounce.Message{From: m.From, QueueID: m.QueueID, Body: m.Body, Size: m.Size})
			if herr != nil {
				ss.s.log.Warn("handling mail to a bounce address", "list", b.list.Addr.String(), "queue_id", m.QueueID, "err", herr)
				err = smtpError(reply.TempLocal)
			} else {
				ss.s.log.Debug("mail to a bounce address", "list", b.list.Addr.String(), "queue_id", m.QueueID, "result", res.String())
			}
			done[k] = err
		}
		status.SetStatus(b.raw, err)
	}
}
