package milter

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

var errNoStore = errors.New("no token store configured")

// check judges tok for list l with policy.Check. It reads the store; it
// never spends.
func (c *session) check(l *config.List, tok string, headerFrom []address.Address) policy.Verdict {
	if tok != "" && c.srv.opts.Tokens == nil {
		return policy.Verdict{Reason: policy.TempFail, List: l.Addr.String(), Cause: errNoStore}
	}
	if v, blocked := c.throttled(l, tok); blocked {
		return v
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.storeTimeout)
	defer cancel()
	if tok != "" { // without a token nothing is looked up
		defer c.srv.observeCheck(time.Now())
	}
	v, _ := policy.Check(ctx, c.srv.opts.Tokens, policy.Facts{
		List:           l.Addr,
		EnvelopeSender: c.msg.envelopeSender(),
		HeaderFrom:     headerFrom,
		Token:          tok,
		Now:            c.srv.now(),
	})
	c.noteGuess(v)
	return v
}

// endOfHeaders decides what the header can decide: a loop, a subaddress
// token waiting for the From header, a header token; and a missing token
// when the body cannot carry one. Otherwise it starts the body scan and
// answers "continue".
func (c *session) endOfHeaders() *gomilter.Response {
	msg := &c.msg
	msg.eohDone = true
	for i := range msg.lists {
		if msg.lists[i].loop {
			return c.final("eoh", policy.Verdict{Reason: policy.Loop, List: msg.lists[i].list.Addr.String()})
		}
	}
	msg.fromAddrs = msg.headerFrom()
	for i := range msg.lists {
		st := &msg.lists[i]
		if st.satisfied {
			continue
		}
		tok, carrier := st.deferredToken, token.CarrierSubaddress
		if tok == "" {
			tok, carrier = msg.headerToken, token.CarrierHeader
		}
		if tok == "" {
			continue
		}
		v := c.check(st.list, tok, msg.fromAddrs)
		if !v.OK() {
			return c.final("eoh", v)
		}
		st.satisfied, st.carrier = true, carrier
	}
	st := msg.firstPending()
	if st == nil {
		return c.final("eoh", policy.Verdict{Reason: policy.Pass})
	}
	if !mayHaveTokenPart(msg.contentType) {
		return c.final("eoh", c.check(st.list, "", msg.fromAddrs))
	}
	msg.body = startBodyScan(msg.finder, unfold(msg.contentType))
	return gomilter.RespContinue
}

// endOfMessage checks the token part's token for every restricted address
// not decided yet. The first failure rejects the whole message.
func (c *session) endOfMessage() *gomilter.Response {
	msg := &c.msg
	if !msg.eohDone {
		// An MTA that sent no end of headers.
		if r := c.endOfHeaders(); r != gomilter.RespContinue {
			return r
		}
	}
	var tok string
	if b := msg.body; b != nil {
		msg.body = nil
		var err error
		if tok, err = b.finish(c.srv.waitTimeout); err != nil {
			v := policy.Verdict{Reason: policy.TempFail, Cause: err}
			if st := msg.firstPending(); st != nil {
				v.List = st.list.Addr.String()
			}
			return c.final("eom", v)
		}
	}
	for i := range msg.lists {
		st := &msg.lists[i]
		if st.satisfied {
			continue
		}
		v := c.check(st.list, tok, msg.fromAddrs)
		if !v.OK() {
			return c.final("eom", v)
		}
		st.satisfied, st.carrier = true, token.CarrierPart
	}
	return c.final("eom", policy.Verdict{Reason: policy.Pass})
}

// final logs the decision on the message, resets it and returns the reply.
func (c *session) final(stage string, v policy.Verdict) *gomilter.Response {
	c.logVerdict(stage, v)
	c.srv.obs.MilterVerdict(v.Reason)
	resp := c.srv.reply(v)
	c.msg.reset()
	return resp
}

func (c *session) tempFailVerdict() policy.Verdict {
	v := policy.Verdict{Reason: policy.TempFail, Cause: c.msg.cause}
	if len(c.msg.lists) > 0 {
		v.List = c.msg.lists[0].list.Addr.String()
	}
	return v
}

func (m *message) firstPending() *listState {
	for i := range m.lists {
		if !m.lists[i].satisfied {
			return &m.lists[i]
		}
	}
	return nil
}

// logVerdict writes the one log line of a decision on restricted mail: queue
// id, reason, list, envelope sender and recipient count. Never the token,
// and never a recipient address, whose subaddress may be the token.
func (c *session) logVerdict(stage string, v policy.Verdict) {
	msg := &c.msg
	recipients := msg.rcpts
	if stage == "rcpt" {
		recipients = 1
	}
	attrs := []slog.Attr{
		slog.String("stage", stage),
		slog.String("queue_id", msg.qid),
		slog.String("reason", v.Reason.String()),
	}
	if v.OK() {
		lists := make([]string, 0, len(msg.lists))
		carriers := make([]string, 0, len(msg.lists))
		for _, st := range msg.lists {
			lists = append(lists, st.list.Addr.String())
			carriers = append(carriers, st.carrier.String())
		}
		attrs = append(attrs,
			slog.String("list", strings.Join(lists, ",")),
			slog.String("carrier", strings.Join(carriers, ",")),
			slog.String("sender", msg.from),
			slog.Int("recipients", recipients))
		c.srv.log.LogAttrs(context.Background(), slog.LevelInfo, "restricted message accepted", attrs...)
		return
	}
	attrs = append(attrs,
		slog.String("list", v.List),
		slog.String("sender", msg.from),
		slog.Int("recipients", recipients),
		slog.Int("code", v.Reply().Code))
	level, text := slog.LevelInfo, "message rejected"
	if stage == "rcpt" {
		text = "recipient rejected"
	}
	if v.Temporary() {
		level, text = slog.LevelWarn, "message deferred (temporary failure)"
		if v.Cause != nil {
			attrs = append(attrs, slog.String("error", v.Cause.Error()))
		}
		if stage == "rcpt" {
			text = "recipient deferred (temporary failure)"
		}
	}
	c.srv.log.LogAttrs(context.Background(), level, text, attrs...)
}
