package lmtp

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/store"
)

// journal records the relay's per-recipient results as they arrive, with
// group commit: whatever arrived while the previous commit was being
// synced goes into the next one. The relay's workers never wait for the
// disk, and a crash can re-send at most the recipients of the commits in
// flight — never lose one.
type journal struct {
	store Store
	id    string
	now   func() time.Time
	log   *slog.Logger

	mu      sync.Mutex
	queued  []store.Outcome
	temp    int           // temporary failures seen (they stay pending)
	lastErr *relay.Error  // last temporary failure, for the log
	wake    chan struct{} // capacity 1: "there is something queued"
	stop    chan struct{}
	done    chan struct{}
	err     error // first commit error
}

func newJournal(ctx context.Context, st Store, id string, now func() time.Time, log *slog.Logger) *journal {
	j := &journal{store: st, id: id, now: now, log: log,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	// Commits use their own context: a delivery cancelled at shutdown must
	// still record what the relay has already accepted.
	go j.run(context.WithoutCancel(ctx))
	return j
}

// report is the relay's callback; it never blocks on the store.
func (j *journal) report(rs []relay.Result) {
	j.mu.Lock()
	for _, r := range rs {
		switch {
		case r.Err == nil:
			j.queued = append(j.queued, store.Outcome{Rcpt: r.Rcpt, State: store.Delivered})
		case r.Err.Temporary:
			j.temp++
			j.lastErr = r.Err
		default:
			j.queued = append(j.queued, store.Outcome{Rcpt: r.Rcpt, State: store.Failed, Detail: r.Err.Error()})
		}
	}
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

func (j *journal) run(ctx context.Context) {
	defer close(j.done)
	for {
		select {
		case <-j.wake:
			j.commit(ctx)
		case <-j.stop:
			j.commit(ctx)
			return
		}
	}
}

func (j *journal) commit(ctx context.Context) {
	j.mu.Lock()
	batch := j.queued
	j.queued = nil
	j.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := j.store.RecordOutcomes(ctx, j.id, batch, j.now()); err != nil {
		// The recipients stay pending in the journal; a later hand-over
		// sends them again. Better a duplicate than a loss.
		j.mu.Lock()
		if j.err == nil {
			j.err = err
		}
		j.mu.Unlock()
	}
}

// close waits for every queued result to be committed and returns the
// first commit error.
func (j *journal) close() error {
	close(j.stop)
	<-j.done
	if j.temp > 0 && j.lastErr != nil {
		j.log.Warn("relay failed temporarily", "delivery", j.id, "recipients", j.temp, "err", j.lastErr.Error())
	}
	if j.err != nil {
		return fmt.Errorf("recording relay results: %w", j.err)
	}
	return nil
}
