package delivery

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
//
// A commit that fails (the store locked by another process beyond its
// busy timeout, a full disk) keeps its results and is tried again with the
// next one, and at the end until it succeeds or the delivery's time is up:
// results that were never recorded would be sent again on the next
// hand-over, a duplicate for every recipient the relay had taken.
type journal struct {
	store  Store
	id     string
	now    func() time.Time
	log    *slog.Logger
	parent context.Context // the delivery's: its deadline bounds the retries

	mu       sync.Mutex
	queued   []store.Outcome
	temp     int           // temporary failures seen (they stay pending)
	lastErr  *relay.Error  // last temporary failure, for the log
	wake     chan struct{} // capacity 1: "there is something queued"
	stop     chan struct{}
	done     chan struct{}
	err      error // last commit error, until a retry records everything
	failures int   // failed commits, for the log
}

func newJournal(ctx context.Context, st Store, id string, now func() time.Time, log *slog.Logger) *journal {
	j := &journal{store: st, id: id, now: now, log: log,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	// Commits use their own context: a delivery cancelled at shutdown must
	// still record what the relay has already accepted.
	j.parent = ctx
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
			j.drain(ctx)
			return
		}
	}
}

// commitRetryDelay paces the final retries of a failed commit; each
// attempt on a locked store already waits the store's busy timeout.
const commitRetryDelay = 250 * time.Millisecond

// drain commits what is queued, retrying a failed commit until it
// succeeds or the delivery's context ends (its deadline, or a hard
// shutdown). What is still unrecorded then stays pending in the journal
// and is sent again on the next hand-over: better a duplicate than a loss.
func (j *journal) drain(ctx context.Context) {
	for !j.commit(ctx) {
		t := time.NewTimer(commitRetryDelay)
		select {
		case <-t.C:
		case <-j.parent.Done():
			t.Stop()
			j.commit(ctx) // one last attempt
			return
		}
	}
}

// commit records what is queued and reports whether nothing is left
// unrecorded. A failed batch goes back to the front of the queue.
func (j *journal) commit(ctx context.Context) bool {
	j.mu.Lock()
	batch := j.queued
	j.queued = nil
	j.mu.Unlock()
	if len(batch) == 0 {
		return true
	}
	err := j.store.RecordOutcomes(ctx, j.id, batch, j.now())
	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil {
		j.queued = append(batch, j.queued...)
		j.err = err
		j.failures++
		return false
	}
	// The batch held every result of the failed attempts: all recorded.
	j.err = nil
	return len(j.queued) == 0
}

// close waits for every queued result to be committed and returns the
// error of the results left unrecorded, if any.
func (j *journal) close() error {
	close(j.stop)
	<-j.done
	if j.temp > 0 && j.lastErr != nil {
		j.log.Warn("relay failed temporarily", "delivery", j.id, "recipients", j.temp, "err", j.lastErr.Error())
	}
	if j.err != nil {
		return fmt.Errorf("recording relay results (%d failed attempts): %w", j.failures, j.err)
	}
	if j.failures > 0 {
		j.log.Warn("recording relay results needed retries", "delivery", j.id, "failed_attempts", j.failures)
	}
	return nil
}
