package e2e

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

// The relay's faults, end to end: the real binary behind a real Postfix,
// the capture relay refusing, dropping, deferring and stalling. Each test
// clears its fault, lets Postfix retry until its queue is empty, and
// reports its figures (audit_test.go).

const settleTime = 2 * time.Minute

// waitDeferred waits until every accepted message of a is in Postfix's
// deferred queue or gone (delivered), n of them deferred at least.
func (a *audit) waitDeferred(n int) []postfixtest.QueueEntry {
	a.t.Helper()
	return a.w.pf.WaitQueue(a.t, waitMail, func(q []postfixtest.QueueEntry) bool {
		return len(q) >= n && quiescent(q)
	})
}

// TestFaultRelayRefusesConnections: while the relay refuses connections,
// tokened mail waits in Postfix's deferred queue (451 4.4.1); once the
// relay is back every member gets each message once.
func TestFaultRelayRefusesConnections(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	a := newAudit(t, w, "relay-refuses-connections")
	toks := a.issue(6)
	w.relay.Refuse()
	for i, tok := range toks {
		a.submit(tok, carrier(i), "deliver")
	}
	for _, q := range a.waitDeferred(len(toks)) {
		if r := q.Recipients[0].DelayReason; !strings.Contains(r, "4.4.1") {
			t.Errorf("deferred for %q, want our 451 4.4.1", r)
		}
	}
	w.relay.Resume()
	a.settle(settleTime)
	a.report(0)
}

// TestFaultRelayDropsConnections: the relay drops the connection after
// reading a message without answering, and answers 421 (closing) in the
// middle of the recipients; the transactions it never confirmed are sent
// again on the next hand-over, the others not.
func TestFaultRelayDropsConnections(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, membersFile: 12, maxRecipients: 3, connections: 1})
	a := newAudit(t, w, "relay-drops-connections")
	var closing atomic.Int32
	w.relay.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		if rcpt == "member00007@example.com" && closing.Add(1) <= 2 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "closing connection"}
		}
		return nil
	})
	w.relay.DropAfter(1)
	toks := a.issue(3)
	for i, tok := range toks {
		a.submit(tok, carrier(i), "deliver")
	}
	a.waitDeferred(1)
	if len(w.relay.Recipients()) == 0 || closing.Load() == 0 {
		t.Fatalf("the faults split nothing: %d copies before them, %d 421 replies", len(w.relay.Recipients()), closing.Load())
	}
	a.settle(settleTime)
	a.report(0)
}

// TestFaultRelayTemporaryReplies: the relay answers 4xx at every stage —
// 421 instead of its greeting, 451 to MAIL FROM, 452 to a recipient, 451
// after the message — for a while; each refused recipient is sent once
// later, each accepted one never again.
func TestFaultRelayTemporaryReplies(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, membersFile: 8, maxRecipients: 2, connections: 2})
	a := newAudit(t, w, "relay-answers-4xx")
	var conns, mails, rcpts, datas atomic.Int32
	w.relay.SetConnectHook(func(int) *smtp.SMTPError {
		if conns.Add(1) == 1 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "not now"}
		}
		return nil
	})
	w.relay.SetMailHook(func(string) *smtp.SMTPError {
		if n := mails.Add(1); n == 3 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	})
	w.relay.SetRcptHook(func(r string) *smtp.SMTPError {
		if strings.HasPrefix(r, "member00003@") && rcpts.Add(1) <= 2 {
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full for now"}
		}
		return nil
	})
	w.relay.SetDataHook(func(testsmtp.Message) error {
		if datas.Add(1)%4 == 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "queue write failed"}
		}
		return nil
	})
	toks := a.issue(4)
	for i, tok := range toks {
		a.submit(tok, carrier(i), "deliver")
	}
	a.waitDeferred(1)
	w.relay.SetDataHook(nil)
	a.settle(settleTime)
	a.report(0)
	if conns.Load() < 2 || mails.Load() < 3 || rcpts.Load() < 2 || datas.Load() < 2 {
		t.Errorf("not every fault fired: %d connections, %d MAIL, %d refused RCPT, %d DATA", conns.Load(), mails.Load(), rcpts.Load(), datas.Load())
	}
}

// TestFaultRelayTimesOut: the relay stops answering RCPT for longer than
// relay.command_timeout: the daemon gives up on the connection before the
// message was sent, answers 451, and sends it once the relay answers
// again.
func TestFaultRelayTimesOut(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, set: map[string]string{"relay.command_timeout": `"1s"`}})
	a := newAudit(t, w, "relay-times-out")
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var stalls atomic.Int32
	w.relay.SetRcptHook(func(string) *smtp.SMTPError {
		if stalls.Add(1) <= 2 {
			<-release // far beyond the client's 1s: it has hung up by then
		}
		return nil
	})
	toks := a.issue(2)
	for i, tok := range toks {
		a.submit(tok, carrier(i), "deliver")
	}
	for _, q := range a.waitDeferred(len(toks)) {
		if r := q.Recipients[0].DelayReason; !strings.Contains(r, "4.4.1") {
			t.Errorf("deferred for %q, want our 451 4.4.1", r)
		}
	}
	once.Do(func() { close(release) })
	a.settle(settleTime)
	a.report(0)
}

// TestFaultRelayStallsAfterTheMessage is the other side of a timeout, the
// window of RFC 1047: the relay has the whole message and answers the
// final dot only after relay.command_timeout, then accepts it. The daemon
// cannot know that the relay took the copy; it answers 451 and sends it
// again on the next hand-over: one duplicate per recipient of that
// transaction, never a loss. The figure is reported as measured.
func TestFaultRelayStallsAfterTheMessage(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, set: map[string]string{"relay.command_timeout": `"1s"`}})
	a := newAudit(t, w, "relay-answers-after-timeout")
	tok := a.issue(1)[0]
	w.relay.DelayData(3 * time.Second)
	a.submit(tok, "part", "deliver")
	a.waitDeferred(1)
	// The relay takes the message when its stall ends.
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	w.relay.DelayData(0)
	a.settle(settleTime)
	f := a.report(len(defaultMembers))
	if f.duplicated != len(defaultMembers) {
		t.Errorf("%d duplicates; the window predicts one per recipient of the stalled transaction (%d)", f.duplicated, len(defaultMembers))
	}
}

// TestFaultMilterDown: the milter is down while Postfix runs, with
// milter_default_action = accept as etc/postfix/main.cf ships it. Postfix
// takes every message; the LMTP endpoint still refuses the tokenless and
// the unknown-token ones (550 5.7.1: Postfix bounces them to the sender)
// and delivers the tokened ones.
func TestFaultMilterDown(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, milterDefault: "accept", set: map[string]string{"milter.listen": `""`}})
	a := newAudit(t, w, "milter-down")
	toks := a.issue(3)
	for i, tok := range toks {
		a.submit(tok, carrier(i), "deliver")
	}
	a.submit("", "none", "bounce")
	unknown := a.submit("unknowntoken2guess3aaaaaaaaaaaa", "part", "bounce")
	a.secrets = append(a.secrets, unknown.token)
	for _, m := range a.msgs {
		if m.res.Data != nil {
			t.Fatalf("%s: Postfix refused with the milter down and default_action=accept: %v", m.id, m.res.Data)
		}
	}
	a.settle(settleTime)
	a.report(0)
	dsns := ""
	for _, m := range w.sink.Messages() {
		dsns += strings.ReplaceAll(string(m.Data), "\r\n ", " ")
	}
	for _, s := range []string{"No posting token found", "Unknown posting token"} {
		if !strings.Contains(dsns, s) {
			t.Errorf("no DSN says %q", s)
		}
	}
	// Postfix logs "warning: connect to Milter service inet:...: Connection refused".
	if !strings.Contains(w.pf.Log(), "Milter service") || strings.Contains(w.rm.log.String(), "component=milter addr") {
		t.Errorf("the milter was not down")
	}
}
