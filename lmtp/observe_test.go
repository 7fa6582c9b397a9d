package lmtp

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/relay"
)

// countingObserver records what the endpoint reports.
type countingObserver struct {
	mu                          sync.Mutex
	outcomes                    map[string]int
	delivered, failed, deferred int
}

func (o *countingObserver) LMTPDelivery(outcome string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.outcomes == nil {
		o.outcomes = map[string]int{}
	}
	if d >= 0 {
		o.outcomes[outcome]++
	}
}

func (o *countingObserver) LMTPRecipients(delivered, failed, deferred int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.delivered += delivered
	o.failed += failed
	o.deferred += deferred
}

func (o *countingObserver) want(t *testing.T, what string, delivered, deferred, refused, rDelivered, rFailed, rDeferred int) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.outcomes[delivery.OutcomeDelivered] != delivered || o.outcomes[delivery.OutcomeDeferred] != deferred || o.outcomes[delivery.OutcomeRefused] != refused ||
		o.delivered != rDelivered || o.failed != rFailed || o.deferred != rDeferred {
		t.Errorf("%s: deliveries %v, recipients delivered %d failed %d deferred %d; want delivered %d deferred %d refused %d, recipients %d/%d/%d",
			what, o.outcomes, o.delivered, o.failed, o.deferred, delivered, deferred, refused, rDelivered, rFailed, rDeferred)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// observedEnv is newEnv with a second server, built with obs and a log
// buffer, in place of the first.
func observedEnv(t *testing.T, obs delivery.Observer) (*env, *syncBuf) {
	t.Helper()
	e := newEnv(t)
	logs := &syncBuf{}
	opts := e.options(slog.New(slog.NewTextHandler(logs, nil)))
	opts.Observer = obs
	srv := New(opts)
	e.srv, e.addr = srv, e.serve(srv)
	return e, logs
}

// TestObserverSeesDeliveries: every attempt's outcome and every
// recipient's result reach the observer, given-up recipients as failed.
func TestObserverSeesDeliveries(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	e, logs := observedEnv(t, obs)
	e.relay.answer = func(r string) *relay.Error {
		switch r {
		case "erin@example.com":
			return &relay.Error{Code: 550, Stage: relay.StageRcpt, Message: "no such user"}
		case "dave@example.com":
			return &relay.Error{Temporary: true, Code: 451, Stage: relay.StageRcpt, Message: "later"}
		}
		return nil
	}
	tok := e.issue("board@example.org", nil)
	received := "Received: from client.example.net (client.example.net [192.0.2.1])\r\n\tby mx.example.org (Postfix) with ESMTP id 4Xq1Yz2Hk9z1;\r\n\tTue, 24 Nov 2026 10:00:00 +0000 (UTC)\r\n"
	msg := append([]byte(received), message(tok, "")...)
	if r, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg); !strings.HasPrefix(r["board@example.org"], "451 4.4.1") {
		t.Fatalf("first hand-over: %v", r)
	}
	obs.want(t, "first hand-over", 0, 1, 0, 3, 1, 1)
	if !strings.Contains(logs.String(), "queue_id=4Xq1Yz2Hk9z1") {
		t.Errorf("the delivery line lacks the queue id:\n%s", logs.String())
	}

	// Past give_up_after, dave (still failing) is given up on: failed.
	e.advance(e.cfg.Load().LMTP.GiveUpAfter.D() + time.Minute)
	if r, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg); r["board@example.org"] != "250" {
		t.Fatalf("hand-over after give_up_after: %v", r)
	}
	obs.want(t, "given up", 1, 1, 0, 3, 2, 1)

	if r, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, message("", "")); !strings.HasPrefix(r["board@example.org"], "550 5.7.1") {
		t.Fatalf("tokenless: %v", r)
	}
	obs.want(t, "refused", 1, 1, 1, 3, 2, 1)
}

func TestQueueID(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ msg, want string }{
		{"Received: from a (a [192.0.2.1])\r\n\tby mx.example.org (Postfix) with ESMTP id 4Xq1Yz2Hk9z1;\r\n\tTue, 24 Nov 2026\r\nSubject: x\r\n\r\nbody id 999999\r\n", "4Xq1Yz2Hk9z1"},
		{"Received: by mx.example.org (Postfix, from userid 1000)\r\n\tid 3A1B2C4D5E; Tue, 24 Nov 2026\r\n\r\n", "3A1B2C4D5E"},
		{"received: from x by y with LMTP id ABCDEF123 ; now\n\n", "ABCDEF123"},
		// Not the first field: the sender's own Received is no queue id of ours.
		{"Subject: x\r\nReceived: by y with ESMTP id ABCDEF123;\r\n\r\n", ""},
		{"Received: by y with ESMTP id <abc@x>;\r\n\r\n", ""},
		{"Received: by y (Postfix) with ESMTP id AB;\r\n\r\n", ""},
		{"Received: from userid 1000 by y; now\r\n\r\n", ""},
		{"", ""},
		{"Received: " + strings.Repeat("x", 20000) + " id ABCDEF123;\r\n\r\n", ""},
	} {
		if got := queueID(strings.NewReader(c.msg)); got != c.want {
			t.Errorf("queueID(%.60q) = %q, want %q", c.msg, got, c.want)
		}
	}
}
