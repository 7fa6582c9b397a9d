package milter

import (
	"context"
	"log/slog"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

// check completes the facts with what the message knows now (sender,
// time) and has policy decide. It reads the store; it never spends.
func (c *session) check(f policy.Facts) (policy.Facts, policy.Verdict) {
	f.EnvelopeSender, f.Now = c.msg.envelopeSender(), c.srv.now()
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.storeTimeout)
	defer cancel()
	if f.Token != "" && f.Record == nil { // without a token nothing is looked up
		defer c.srv.observeCheck(time.Now())
	}
	f, v := c.srv.checker.Check(ctx, f, c.guardKeys()...)
	if v.Tripped {
		c.srv.log.Warn("too many unknown posting tokens: further attempts get 450 4.7.1 for a while",
			"client", c.msg.client, "sender", c.msg.from, "list", v.List, "queue_id", c.msg.qid)
	}
	return f, v
}

// judge decides every restricted address with the facts learnt so far and
// returns the first final refusal, or whether every address passed.
func (c *session) judge() (refusal *policy.Verdict, allPassed bool) {
	allPassed = true
	for i := range c.msg.lists {
		st := &c.msg.lists[i]
		f, v := c.check(st.facts)
		st.facts = f
		switch {
		case v.OK():
			st.passed = true
		case !v.Final():
			allPassed = false
		default:
			return &v, false
		}
	}
	return nil, allPassed
}

// endOfHeaders learns the header's facts — the loop marker, the From field,
// a header token — and decides what they decide. When a token part in the
// body may still decide it starts the body scan and answers "continue".
func (c *session) endOfHeaders() *gomilter.Response {
	msg := &c.msg
	msg.eohDone = true
	from := policy.FromAddresses(msg.fromHeader)
	bodyRead := !mayHaveTokenPart(msg.contentType)
	for i := range msg.lists {
		st := &msg.lists[i]
		st.facts.HeaderRead, st.facts.BodyRead, st.facts.HeaderFrom = true, bodyRead, from
		st.facts.MessageID = msg.messageID
		st.facts.Outsiders = msg.outsiders > 0
		if st.facts.Token == "" && msg.headerToken != "" {
			st.facts.Token, st.carrier = msg.headerToken, token.CarrierHeader
		}
	}
	refusal, passed := c.judge()
	switch {
	case refusal != nil:
		return c.final("eoh", *refusal)
	case passed:
		return c.final("eoh", policy.Verdict{Reason: policy.Pass})
	}
	msg.body = startBodyScan(msg.rules.Finder, unfold(msg.contentType))
	return gomilter.RespContinue
}

// endOfMessage learns the token part's token, for every restricted address
// not decided yet. The first refusal rejects the whole message.
func (c *session) endOfMessage() *gomilter.Response {
	msg := &c.msg
	if !msg.eohDone {
		// An MTA that sent no end of headers.
		if r := c.endOfHeaders(); r != gomilter.RespContinue {
			return r
		}
	}
	var (
		tok string
		err error
	)
	if b := msg.body; b != nil {
		msg.body = nil
		tok, err = b.finish(c.srv.waitTimeout)
	}
	for i := range msg.lists {
		st := &msg.lists[i]
		st.facts.BodyRead = true
		if st.facts.Token == "" {
			st.facts.Token, st.facts.Err, st.carrier = tok, err, token.CarrierPart
		}
	}
	refusal, _ := c.judge()
	if refusal != nil {
		return c.final("eom", *refusal)
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
		v.List = c.msg.lists[0].facts.List.Addr.String()
	}
	return v
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
			lists = append(lists, st.facts.List.Addr.String())
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
