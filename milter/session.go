package milter

import (
	"errors"
	"fmt"
	"runtime/debug"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/reply"
	"github.com/restrictedmail/restrictedmail/token"
)

var errNoRules = errors.New("no configuration")

// session is the milter of one MTA connection. go-milter calls its methods
// one at a time, in protocol order, so it needs no lock. Every callback
// answers with a response, never an error: an error would cut the
// connection and leave the message to Postfix's milter_default_action.
type session struct {
	srv *Server
	msg message
}

var _ gomilter.Milter = (*session)(nil)

func (c *session) NewConnection(gomilter.Modifier) error { return nil }

// Connect, Helo and Unknown are negotiated away; an MTA that sends them
// anyway gets "continue".
func (c *session) Connect(string, string, uint16, string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (c *session) Helo(string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (c *session) Unknown(string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

// MailFrom starts a message: it takes the configuration for the whole
// message (a reload applies from the next one) and keeps the sender unparsed
// until a restricted recipient needs it.
func (c *session) MailFrom(from, _ string, _ gomilter.Modifier) (resp *gomilter.Response, _ error) {
	defer c.recover("mail", &resp)
	c.msg.reset()
	c.begin(from)
	return gomilter.RespContinue, nil
}

func (c *session) begin(from string) {
	rules := c.srv.opts.Rules()
	if rules == nil {
		c.msg.fail(errNoRules)
		return
	}
	c.msg.rules, c.msg.idx, c.msg.from = rules, c.srv.indexFor(rules), from
}

// RcptTo lets every recipient through with "continue" except a restricted
// recipient whose subaddress token is bad. It never accepts: in Postfix an
// accept here would end the milter's part in the whole transaction, and a
// later restricted recipient would pass unchecked.
func (c *session) RcptTo(rcpt, _ string, m gomilter.Modifier) (resp *gomilter.Response, _ error) {
	defer c.recover("rcpt", &resp)
	msg := &c.msg
	if msg.rules == nil && !msg.failed {
		c.begin("") // an MTA that did not send MAIL FROM
	}
	if msg.failed {
		return c.srv.tempFail, nil
	}
	// Judge the recipient Postfix resolved ({rcpt_addr}: quotes and source
	// routes removed, the percent hack and bang paths applied, myorigin
	// appended) and, from the transport it picked ({rcpt_mailer},
	// {rcpt_host}), whether it goes to the LMTP endpoint at all.
	addr := rcpt
	if ra := m.Get(gomilter.MacroRcptAddr); ra != "" {
		addr = ra
	}
	toUs := msg.rules.RoutesToUs(m.Get(gomilter.MacroRcptMailer), m.Get(gomilter.MacroRcptHost))
	restricted := false
	if toUs || msg.idx.mayBeRestricted(addr) {
		var r *gomilter.Response
		if r, restricted = c.restrictedRcpt(addr, toUs, m); r != nil {
			return r, nil
		}
	}
	if !restricted {
		msg.outsiders++
	}
	msg.rcpts++
	return gomilter.RespContinue, nil
}

// restrictedRcpt handles a recipient that may be restricted; toUs: Postfix
// routes it to the LMTP endpoint. It returns the rejection of the
// recipient, or nil to let it through, and whether it is restricted. It fails closed: a recipient routed
// to the endpoint that is no list, or cannot be read, is refused here —
// passed on, the endpoint would refuse it after the queue, and Postfix
// would mail a bounce with the whole message to the (forgeable) sender.
func (c *session) restrictedRcpt(rcpt string, toUs bool, m gomilter.Modifier) (*gomilter.Response, bool) {
	msg := &c.msg
	rc, err := msg.rules.Resolve(rcpt)
	switch {
	case err != nil && toUs:
		return c.refuseRcpt(m, reply.BadRestrictedRecipient, "unreadable", err), true
	case rc.List == nil && toUs && msg.rules.IsBounceAddress(rcpt):
		// A list's bounce address: delivery reports come with the null
		// sender and no token; the endpoint reads them and never
		// redistributes them (package bounce).
		return nil, false
	case rc.List == nil && toUs:
		return c.refuseRcpt(m, reply.NotServedHere, "not_served", nil), true
	case err != nil || rc.List == nil:
		return nil, false
	}
	msg.noteQueueID(m)
	st := msg.find(rc.List)
	if rc.Token == "" || st != nil && st.facts.Token != "" {
		// The first subaddress token of a list is the one judged, as the
		// LMTP endpoint does (policy.GroupByList).
		msg.add(rc.List)
		return nil, true
	}
	f := policy.Facts{List: rc.List, Token: rc.Token}
	if st != nil {
		f = st.facts
		f.Token = rc.Token
	}
	f, v := c.check(f)
	switch {
	case v.OK():
		st = msg.add(rc.List)
		st.facts, st.carrier, st.passed = f, token.CarrierSubaddress, true
	case !v.Final():
		// The binding may still match the From header: decide at its end.
		st = msg.add(rc.List)
		st.facts, st.carrier = f, token.CarrierSubaddress
	default:
		// Postfix refuses this recipient alone; the list is judged
		// without it, as the LMTP endpoint will never see it.
		c.logVerdict("rcpt", v)
		c.srv.obs.MilterVerdict(v.Reason)
		return c.srv.reply(v), true
	}
	return nil, true
}

// refuseRcpt refuses one recipient for what it is, not for its token.
func (c *session) refuseRcpt(m gomilter.Modifier, r reply.Reply, why string, err error) *gomilter.Response {
	c.msg.noteQueueID(m)
	attrs := []any{"stage", "rcpt", "queue_id", c.msg.qid, "reason", why, "sender", c.msg.from, "code", r.Code}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	// Never the recipient itself: its subaddress may be a token.
	c.srv.log.Info("recipient rejected", attrs...)
	return c.srv.replyOf(r, policy.Malformed)
}

// Data is the first point at which every recipient is known: a message
// without a restricted recipient is accepted here and its content never
// reaches the milter.
func (c *session) Data(m gomilter.Modifier) (resp *gomilter.Response, _ error) {
	defer c.recover("data", &resp)
	msg := &c.msg
	switch {
	case msg.failed:
		return c.final("data", c.tempFailVerdict()), nil
	case !msg.restricted():
		msg.reset()
		c.srv.obs.MilterOrdinary()
		return gomilter.RespAccept, nil
	}
	msg.noteQueueID(m)
	return gomilter.RespContinue, nil
}

// Header collects what the decision needs; its reply is negotiated away.
func (c *session) Header(name, value string, _ gomilter.Modifier) (resp *gomilter.Response, _ error) {
	defer c.recover("header", &resp)
	if !c.msg.failed && c.msg.restricted() {
		c.msg.header(name, value)
	}
	return gomilter.RespContinue, nil
}

// Headers (end of headers) decides when it can, else starts the body scan.
func (c *session) Headers(m gomilter.Modifier) (resp *gomilter.Response, _ error) {
	defer c.recover("eoh", &resp)
	msg := &c.msg
	switch {
	case msg.failed:
		return c.final("eoh", c.tempFailVerdict()), nil
	case !msg.restricted():
		msg.reset()
		return gomilter.RespAccept, nil
	}
	msg.noteQueueID(m)
	return c.endOfHeaders(), nil
}

// BodyChunk feeds the body scan; its reply is negotiated away.
func (c *session) BodyChunk(chunk []byte, _ gomilter.Modifier) (resp *gomilter.Response, _ error) {
	defer c.recover("body", &resp)
	if c.msg.body != nil {
		c.msg.body.write(chunk)
	}
	return gomilter.RespContinue, nil
}

// EndOfMessage takes the last decision of a restricted message.
func (c *session) EndOfMessage(m gomilter.Modifier) (resp *gomilter.Response, _ error) {
	defer c.recover("eom", &resp)
	msg := &c.msg
	msg.noteQueueID(m)
	switch {
	case msg.failed:
		return c.final("eom", c.tempFailVerdict()), nil
	case !msg.restricted():
		msg.reset()
		return gomilter.RespAccept, nil
	}
	return c.endOfMessage(), nil
}

func (c *session) Abort(gomilter.Modifier) (err error) {
	defer c.recover("abort", nil)
	c.msg.reset()
	return nil
}

func (c *session) Cleanup(gomilter.Modifier) {
	defer c.recover("cleanup", nil)
	c.msg.reset()
}

// recover turns a panic in a callback into a temporary failure, so that a
// bug costs one message a retry, never an unchecked accept or the process.
// Where the MTA waits for the answer (RCPT, DATA, end of headers, end of
// message) the answer is the 451; elsewhere the message is marked failed
// and the next answer is the 451.
func (c *session) recover(stage string, resp **gomilter.Response) {
	r := recover()
	if r == nil {
		return
	}
	c.srv.log.Error("milter: recovered from a panic; answering with a temporary failure",
		"stage", stage, "queue_id", c.msg.qid, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	if resp != nil {
		*resp = c.srv.tempFail
	}
	switch stage {
	case "rcpt":
		// Only this recipient is refused, for now.
	case "data", "eoh", "eom":
		c.msg.reset() // the 451 ends the message
	case "mail", "header", "body":
		c.msg.fail(fmt.Errorf("panic in the %s callback: %v", stage, r))
	default:
		// Abort, cleanup: start afresh. Closing the pipe (without waiting)
		// still ends a body scan's goroutine.
		if c.msg.body != nil {
			c.msg.body.pw.CloseWithError(errScanAborted)
		}
		c.msg = message{}
	}
}

// noteQueueID remembers the queue id for the log, once the MTA gives it,
// and the client's address for the guard.
func (m *message) noteQueueID(mod gomilter.Modifier) {
	if q := mod.Get(gomilter.MacroQueueId); q != "" {
		m.qid = q
	}
	if a := clientAddr(mod); a != "" {
		m.client = a
	}
}
