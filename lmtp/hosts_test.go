package lmtp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// Two restrictedmail hosts on one store: each host is an endpoint with its
// own store handle on e's database file (its own connections; SQLite's
// file locks between them, as between two processes) and its own engine,
// so its own lease owner. Their relays may differ; copies are counted at
// e.relay.

// host starts another endpoint on e's store file, sending through rl.
func (e *env) host(rl delivery.Sender) string {
	e.t.Helper()
	db, err := store.Open(context.Background(), e.cfg.Load().Store.Path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	opts := e.options(slog.New(slog.NewTextHandler(testWriter{e.t}, nil)))
	opts.Store = db
	opts.Settings = func() *delivery.Settings {
		s := e.settings()
		s.Relay = rl
		return s
	}
	return e.serve(New(opts))
}

// to sends msg from alice to board@example.org at the endpoint at addr and
// returns the reply.
func (e *env) to(addr string, msg []byte) string {
	e.t.Helper()
	replies, _, err := lmtpTryAt(addr, "alice@example.net", []string{"board@example.org"}, msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return replies["board@example.org"]
}

// gateRelay holds every fan-out until released, then hands it on.
type gateRelay struct {
	next    delivery.Sender
	entered chan struct{} // one value per Send that began
	release chan struct{}
}

func newGate(next delivery.Sender) *gateRelay {
	return &gateRelay{next: next, entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *gateRelay) Send(ctx context.Context, from string, rcpts []string, body func() io.Reader, report func([]relay.Result)) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
		g.next.Send(ctx, from, rcpts, body, report)
	case <-ctx.Done():
		rs := make([]relay.Result, len(rcpts))
		for i, r := range rcpts {
			rs[i] = relay.Result{Rcpt: r, Err: &relay.Error{Temporary: true, Stage: "connect", Message: "cancelled"}}
		}
		report(rs)
	}
}

// throughOtherMX is msg as the other MX host hands it over: its Postfix
// added its own Received field, so the bytes (and the delivery id by
// bytes) differ; the Message-ID does not.
func throughOtherMX(msg []byte) []byte {
	return append([]byte("Received: from mx2.example.org (mx2.example.org [192.0.2.2])\r\n\tby mx2.example.org (Postfix) with ESMTPS id 4ZxQ1\r\n"), msg...)
}

func (e *env) copiesEach(want int) {
	e.t.Helper()
	got := e.relay.delivered()
	for _, m := range members {
		if got[m] != want {
			e.t.Errorf("%s got %d copies, want %d", m, got[m], want)
		}
	}
}

const distributing = "451 4.3.0 This message is being distributed by another host; try again later"

// TestTwoHostsOneDistribution: while host A fans a message out, host B
// handed the same message — the same bytes, or the bytes of another MX
// with the same Message-ID — answers 451 and sends nothing; once A is done
// B answers 250 without sending. Every member gets one copy and the
// three-use token is spent once.
func TestTwoHostsOneDistribution(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gate := newGate(e.relay)
	a, b := e.host(gate), e.host(e.relay)
	tok := e.issue("board@example.org", func(r *token.Record) { r.UsesAllowed = 3 })
	msg := message(tok, "")
	first := make(chan string, 1)
	go func() {
		replies, _, err := lmtpTryAt(a, "alice@example.net", []string{"board@example.org"}, msg)
		if err != nil {
			first <- err.Error()
			return
		}
		first <- replies["board@example.org"]
	}()
	select {
	case <-gate.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("host A never began its fan-out")
	}
	if r := e.to(b, msg); r != distributing {
		t.Errorf("host B, the same message while A sends: %q, want %q", r, distributing)
	}
	if r := e.to(b, throughOtherMX(msg)); r != distributing {
		t.Errorf("host B, the message through the other MX while A sends: %q, want %q", r, distributing)
	}
	close(gate.release)
	if r := <-first; r != "250" {
		t.Fatalf("host A: %q, want 250", r)
	}
	for _, m := range [][]byte{msg, throughOtherMX(msg)} {
		if r := e.to(b, m); r != "250" {
			t.Errorf("host B after A finished: %q, want 250", r)
		}
	}
	e.copiesEach(1)
	if n := e.spent(tok); n != 1 {
		t.Errorf("the token was spent %d times, want 1", n)
	}
}

// TestTakeOverFromADeadHost: a delivery left with pending recipients and
// the live lease of a host that died is not touched (451) until the lease
// expires; then the other host, handed the message through the other MX,
// takes over and sends to the pending recipients only.
func TestTakeOverFromADeadHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.host(e.relay)
	tok := e.issue("board@example.org", nil) // single use: B's copy is a duplicate by its Message-ID
	msg := message(tok, "")
	pending := map[string]bool{members[2]: true, members[3]: true, members[4]: true}
	e.relay.answer = func(rcpt string) *relay.Error {
		if pending[rcpt] {
			return &relay.Error{Temporary: true, Code: 451, Message: "try later"}
		}
		return nil
	}
	if r := e.to(e.addr, msg); !strings.HasPrefix(r, "451 4.4.1") {
		t.Fatalf("host A with three recipients failing: %q, want 451 4.4.1", r)
	}
	e.relay.answer = nil
	// Host A takes the delivery up again and dies in the middle: its
	// lease stays behind.
	list, _ := address.Parse("board@example.org")
	id := delivery.ID(list, "alice@example.net", sha256.Sum256(msg))
	now := *e.now.Load()
	lease := e.settings().Lease
	if ok, err := e.db.AcquireLease(context.Background(), id, "dead-host/4711/00", now, now.Add(lease)); err != nil || !ok {
		t.Fatalf("AcquireLease for the dying host: %v, %v", ok, err)
	}
	if r := e.to(b, throughOtherMX(msg)); r != distributing {
		t.Errorf("host B while the dead host's lease is live: %q, want %q", r, distributing)
	}
	e.advance(lease + 2*time.Second)
	if r := e.to(b, throughOtherMX(msg)); r != "250" {
		t.Fatalf("host B after the lease expired: %q, want 250", r)
	}
	e.copiesEach(1)
	if n := e.spent(tok); n != 1 {
		t.Errorf("the token was spent %d times, want 1", n)
	}
	d, err := e.db.Delivery(context.Background(), id)
	if err != nil || d.Completed.IsZero() || d.LeaseOwner != "" {
		t.Errorf("the delivery after the take-over: completed %v, lease owner %q, %v", d.Completed, d.LeaseOwner, err)
	}
}

// TestNoMessageIDIsKnownByItsBytes documents the limit of the
// de-duplication: a message without a Message-ID arriving through two MX
// hosts is two messages; with a three-use token both are distributed.
func TestNoMessageIDIsKnownByItsBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.host(e.relay)
	tok := e.issue("board@example.org", func(r *token.Record) { r.UsesAllowed = 3 })
	msg := regexp.MustCompile(`Message-ID: [^\r]*\r\n`).ReplaceAll(message(tok, ""), nil)
	if r := e.to(e.addr, msg); r != "250" {
		t.Fatalf("host A: %q", r)
	}
	if r := e.to(b, msg); r != "250" { // the same bytes: the same delivery
		t.Fatalf("host B, same bytes: %q", r)
	}
	e.copiesEach(1)
	if r := e.to(b, throughOtherMX(msg)); r != "250" {
		t.Fatalf("host B, other bytes: %q", r)
	}
	e.copiesEach(2)
	if n := e.spent(tok); n != 2 {
		t.Errorf("the token was spent %d times, want 2", n)
	}
}

// leaseOf reads the lease of the delivery of msg.
func (e *env) leaseOf(msg []byte) store.Delivery {
	e.t.Helper()
	list, _ := address.Parse("board@example.org")
	d, err := e.db.Delivery(context.Background(), delivery.ID(list, "alice@example.net", sha256.Sum256(msg)))
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// shortLease makes e's lease 3 s (the least allowed): renewed every second.
func (e *env) shortLease() time.Duration {
	cfg := *e.cfg.Load()
	cfg.LMTP.Lease = 3e9
	e.cfg.Store(&cfg)
	return 3 * time.Second
}

// TestLeaseRenewedWhileSending: a fan-out that lasts beyond the lease keeps
// renewing it, so that the other host still answers 451 and does not take
// a live delivery over.
func TestLeaseRenewedWhileSending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lease := e.shortLease()
	gate := newGate(e.relay)
	a, b := e.host(gate), e.host(e.relay)
	tok := e.issue("board@example.org", nil)
	msg := message(tok, "")
	first := make(chan string, 1)
	go func() {
		replies, _, _ := lmtpTryAt(a, "alice@example.net", []string{"board@example.org"}, msg)
		first <- replies["board@example.org"]
	}()
	<-gate.entered
	// The clock moves past the lease taken at the start; A's next renewal
	// extends it from the new time.
	e.advance(10 * lease)
	waitFor(t, func() bool { return !e.leaseOf(msg).LeaseUntil.Before(e.now.Load().Add(lease).Truncate(time.Second)) })
	if r := e.to(b, throughOtherMX(msg)); r != distributing {
		t.Errorf("host B while A renews its lease: %q, want %q", r, distributing)
	}
	close(gate.release)
	if r := <-first; r != "250" {
		t.Fatalf("host A: %q, want 250", r)
	}
	e.copiesEach(1)
}

// TestLeaseLostStopsTheFanOut: a host whose lease was taken over (it
// stalled beyond the lease, and another host took the delivery) stops
// sending at its next renewal, answers 4xx, and leaves the recipients to
// the new owner.
func TestLeaseLostStopsTheFanOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lease := e.shortLease()
	gate := newGate(e.relay)
	a := e.host(gate)
	tok := e.issue("board@example.org", nil)
	msg := message(tok, "")
	first := make(chan string, 1)
	go func() {
		replies, _, _ := lmtpTryAt(a, "alice@example.net", []string{"board@example.org"}, msg)
		first <- replies["board@example.org"]
	}()
	<-gate.entered
	id := e.leaseOf(msg).ID
	waitFor(t, func() bool {
		e.advance(10 * lease) // beyond whatever A renewed it to
		now := *e.now.Load()
		ok, err := e.db.AcquireLease(context.Background(), id, "thief/1/00", now, now.Add(time.Hour))
		return err == nil && ok
	})
	select {
	case r := <-first:
		if !strings.HasPrefix(r, "4") {
			t.Errorf("host A after losing its lease: %q, want 4xx", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("host A kept sending after its lease was taken over")
	}
	e.copiesEach(0)
	if d := e.leaseOf(msg); d.LeaseOwner != "thief/1/00" || !d.Completed.IsZero() {
		t.Errorf("after A stopped: lease owner %q, completed %v; want the thief's, pending", d.LeaseOwner, d.Completed)
	}
}

// TestTwoHostsConcurrentHandOvers: one message with a single-use token
// handed over twenty times at once, through both hosts, as its own bytes
// and as other MX hosts' (each with its own Received field): each
// hand-over answers 250 or 451 (another host distributes it), never a
// refusal, and once all have answered 250 every member has one copy and
// the token one use. (The race of the beginnings: the unique keys make one
// delivery of them. The lease's part is shown deterministically by
// TestTwoHostsOneDistribution.)
func TestTwoHostsConcurrentHandOvers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hosts := []string{e.host(e.relay), e.host(e.relay)}
	tok := e.issue("board@example.org", nil)
	msg := message(tok, "")
	variant := func(i int) []byte {
		if i%3 == 0 {
			return msg
		}
		return append([]byte(fmt.Sprintf("Received: from mx%d.example.org\r\n\tby mx%d.example.org (Postfix) with ESMTPS id Q%d\r\n", i, i, i)), msg...)
	}
	const n = 20
	done := make([]bool, n)
	for round := 0; round < 50; round++ {
		var wg sync.WaitGroup
		replies := make([]string, n)
		for i := range n {
			if done[i] {
				continue
			}
			wg.Go(func() {
				r, _, err := lmtpTryAt(hosts[i%2], "alice@example.net", []string{"board@example.org"}, variant(i))
				if err != nil {
					replies[i] = err.Error()
					return
				}
				replies[i] = r["board@example.org"]
			})
		}
		wg.Wait()
		left := 0
		for i, r := range replies {
			switch {
			case done[i]:
			case r == "250":
				done[i] = true
			case r == distributing:
				left++
			default:
				t.Fatalf("hand-over %d (round %d): %q, want 250 or %q", i, round, r, distributing)
			}
		}
		if left == 0 {
			break
		}
	}
	for i, d := range done {
		if !d {
			t.Errorf("hand-over %d never answered 250", i)
		}
	}
	e.copiesEach(1)
	if n := e.spent(tok); n != 1 {
		t.Errorf("the token was spent %d times, want 1", n)
	}
}

// unrenewable is a store that cannot renew leases, as when it is
// unreachable.
type unrenewable struct{ delivery.Store }

func (unrenewable) RenewLease(context.Context, string, string, time.Time) error {
	return errors.New("connection refused")
}

// TestUnrenewableLeaseStopsTheFanOut: a host that cannot renew its lease
// (the store unreachable) stops sending before the lease can run out, so
// that it never sends beside a host that took the delivery over; the
// recipients stay pending and the next hand-over sends them.
func TestUnrenewableLeaseStopsTheFanOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lease := e.shortLease()
	gate := newGate(e.relay)
	e.swap(func(o *Options) {
		o.Store = unrenewable{e.db}
		o.Settings = func() *delivery.Settings {
			s := e.settings()
			s.Relay = gate
			return s
		}
	})
	tok := e.issue("board@example.org", nil)
	msg := message(tok, "")
	first := make(chan string, 1)
	go func() {
		replies, _, _ := lmtpTryAt(e.addr, "alice@example.net", []string{"board@example.org"}, msg)
		first <- replies["board@example.org"]
	}()
	<-gate.entered
	e.advance(lease) // the lease taken at the start runs out now
	select {
	case r := <-first:
		if !strings.HasPrefix(r, "4") {
			t.Errorf("a host that cannot renew its lease: %q, want 4xx", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the host kept sending with a lease it could not renew")
	}
	e.copiesEach(0)
	b := e.host(e.relay)
	if r := e.to(b, msg); r != "250" {
		t.Fatalf("the next hand-over: %q, want 250", r)
	}
	e.copiesEach(1)
}
