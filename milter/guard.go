package milter

import (
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/policy"
)

// The guard (package guard) is consulted where a token is about to be
// looked up, and told where the lookup found no such token. Its keys are
// the SMTP client's address, from Postfix's {client_addr} macro, and the
// envelope sender. Nothing of this runs for ordinary mail, nor for a
// restricted message without a token: no token, no guess.

// guardKeys returns the message's keys for the guard.
func (c *session) guardKeys() (client, sender string) {
	return guard.ClientKey(c.msg.client), guard.SenderKey(c.msg.from)
}

// throttled returns the Throttled verdict for l when the client or the
// sender has presented too many unknown tokens lately.
func (c *session) throttled(l *config.List, tok string) (policy.Verdict, bool) {
	if tok == "" || c.srv.opts.Guard == nil {
		return policy.Verdict{}, false
	}
	client, sender := c.guardKeys()
	if !c.srv.opts.Guard.Blocked(c.srv.now(), client, sender) {
		return policy.Verdict{}, false
	}
	return policy.Verdict{Reason: policy.Throttled, List: l.Addr.String()}, true
}

// noteGuess counts an unknown token against the client and the sender.
func (c *session) noteGuess(v policy.Verdict) {
	if v.Reason != policy.Unknown || c.srv.opts.Guard == nil {
		return
	}
	client, sender := c.guardKeys()
	if c.srv.opts.Guard.Fail(c.srv.now(), client, sender) {
		c.srv.log.Warn("too many unknown posting tokens: further attempts get 450 4.7.1 for a while",
			"client", c.msg.client, "sender", c.msg.from, "list", v.List, "queue_id", c.msg.qid)
	}
}
