package lmtp

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/store"
)

// lockedStore fails RecordOutcomes as SQLite does when another process
// holds the write lock beyond the busy timeout, the first fails times.
type lockedStore struct {
	delivery.Store
	fails atomic.Int32
	calls atomic.Int32
}

var errLocked = errors.New("database is locked (5) (SQLITE_BUSY)")

func (l *lockedStore) RecordOutcomes(ctx context.Context, id string, outs []store.Outcome, now time.Time) error {
	l.calls.Add(1)
	if l.fails.Add(-1) >= 0 {
		return errLocked
	}
	return l.Store.RecordOutcomes(ctx, id, outs, now)
}

// TestJournalRetriesALockedStore is the regression test of a duplicate
// found with the store locked in the middle of a fan-out: the relay took
// every copy, recording the results failed once, the delivery answered
// 451, and Postfix's next hand-over sent every copy again. The journal now
// retries the commit; the delivery completes with 250 and each member gets
// one copy.
func TestJournalRetriesALockedStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ls := &lockedStore{Store: e.db}
	ls.fails.Store(3)
	e.swap(func(o *Options) { o.Store = ls })
	tok := e.issue("board@example.org", nil)
	msg := message(tok, "")
	for hand := range 2 {
		replies, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg)
		if r := replies["board@example.org"]; r != "250" {
			t.Errorf("hand-over %d: %q, want 250", hand+1, r)
		}
	}
	for _, m := range members {
		if n := e.relay.delivered()[m]; n != 1 {
			t.Errorf("%s got %d copies, want 1", m, n)
		}
	}
	if ls.calls.Load() < 4 {
		t.Errorf("RecordOutcomes called %d times; the failures were not retried", ls.calls.Load())
	}
}

// TestJournalGivesUpWithTheDelivery: a store that stays locked past the
// delivery's deadline makes the delivery answer 4xx with the recipients
// still pending, and the retries stop. The next hand-over sends them again:
// a duplicate for each, never a loss.
func TestJournalGivesUpWithTheDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	healthy := e.addr
	ls := &lockedStore{Store: e.db}
	ls.fails.Store(1 << 30)
	e.swap(func(o *Options) { o.Store = ls; o.DeliveryTimeout = time.Second })
	tok := e.issue("board@example.org", nil)
	msg := message(tok, "")
	replies, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg)
	if r := replies["board@example.org"]; len(r) < 3 || r[0] != '4' {
		t.Fatalf("reply %q, want 4xx", r)
	}
	e.addr = healthy
	if replies, _ := e.lmtpSend("alice@example.net", []string{"board@example.org"}, msg); replies["board@example.org"] != "250" {
		t.Fatalf("hand-over to a healthy store: %q, want 250", replies["board@example.org"])
	}
	for _, m := range members {
		if n := e.relay.delivered()[m]; n != 2 {
			t.Errorf("%s got %d copies, want 2 (the unrecorded send and the retry)", m, n)
		}
	}
}
