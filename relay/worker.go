package relay

import (
	"context"
	"io"
	"sync"
	"time"
)

// maxLostInARow is how many transactions in a row a worker may lose to a
// dropped or timed-out connection before it stops: a relay that stalls
// every DATA must not cost every batch a command timeout.
const maxLostInARow = 3

// batch is the recipients of one transaction.
type batch struct {
	rcpts    []string
	replayed bool // already sent again after a stale connection
}

// run is the state of one Send.
type run struct {
	cl   *Client
	ctx  context.Context
	from string
	body func() io.Reader

	reportMu sync.Mutex
	report   func([]Result)

	probeOnce sync.Once
	probed    chan struct{} // closed once worker 0 has tried to connect

	mu      sync.Mutex
	changed sync.Cond // on mu: a batch was put back, or one was finished
	queue   []*batch
	held    int    // batches taken by workers, neither finished nor put back
	live    int    // workers that have not stopped
	tripped *Error // the open breaker: every batch fails with it at once
}

func (r *run) work(id int) {
	log := r.cl.log.With("worker", id)
	if id == 0 {
		defer r.probeDone()
	} else {
		select { // see the package comment: one connection attempt first
		case <-r.probed:
		case <-r.ctx.Done():
		}
	}
	var k *conn
	defer func() {
		if k != nil {
			k.quit(r.ctx)
		}
	}()
	probe := id == 0 // this worker's first attempt is the one the others wait for
	lostInARow := 0
	for {
		b, tripped := r.next()
		switch {
		case b == nil:
			return
		case tripped != nil:
			r.fail(b, tripped)
			continue
		case r.ctx.Err() != nil:
			r.fail(b, connError(r.ctx, StageConnect, r.ctx.Err()))
			continue
		}
		if k == nil {
			var e *Error
			connStart := time.Now()
			k, e = r.cl.connect(r.ctx)
			r.cl.observeConnect(connStart, e)
			if e != nil {
				if r.ctx.Err() == nil {
					log.Warn("relay connection failed", "stage", e.Stage, "error", e)
				}
				drain := r.retire(b, e, probe)
				r.probeDone()
				if drain {
					continue
				}
				return
			}
			if probe {
				probe = false
				r.probeDone()
			}
		}

		start, reused := time.Now(), k.txns > 0
		o := k.transact(r.ctx, r.from, b.rcpts, r.body)
		r.cl.observeTransaction(start, o)
		ok, temp, perm := tally(o.results)
		log.Debug("relay transaction", "rcpts", len(b.rcpts), "accepted", o.accepted,
			"delivered", ok, "temporary", temp, "permanent", perm, "stage", o.stage,
			"conn_transactions", k.txns, "duration", time.Since(start))
		if o.refused != nil {
			log.Error("relay refused the envelope sender: check the bounce address and the relay's sender policy",
				"from", r.from, "error", o.refused)
		}
		if o.lost == nil {
			lostInARow = 0
			r.finish(o.results)
			continue
		}

		k.close()
		k = nil
		if o.replay && reused && !b.replayed && r.ctx.Err() == nil {
			// Relays close idle or long-used connections; MAIL on such a
			// connection fails with nothing sent. Once, on a new one.
			log.Debug("relay connection went stale, sending the transaction again", "error", o.lost)
			b.replayed = true
			r.requeue(b)
			continue
		}
		r.finish(o.results)
		if r.ctx.Err() != nil {
			continue
		}
		log.Warn("relay connection lost", "stage", o.lost.Stage, "error", o.lost)
		lostInARow++
		if lostInARow >= maxLostInARow && !r.retire(nil, o.lost, false) {
			return // the other workers carry on
		}
	}
}

// next takes a batch off the queue, with the breaker's error if it is
// open. A nil batch means that all the work is done and the worker stops.
//
// An empty queue is not enough for that while other workers hold batches:
// a worker that cannot reconnect puts its batch back (retire), and it must
// find a worker still there to take it. Were the idle workers gone, it
// would count itself the last one and open the breaker, failing a batch
// that a working connection could have delivered. So an idle worker waits
// until every batch is finished; the workers holding batches finish them
// or put them back in bounded time (the command timeout, the context).
func (r *run) next() (*batch, *Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 && r.held > 0 && r.cl.onIdle != nil {
		r.cl.onIdle()
	}
	for len(r.queue) == 0 && r.held > 0 {
		r.changed.Wait()
	}
	if len(r.queue) == 0 {
		r.live--
		return nil, nil
	}
	b := r.queue[0]
	r.queue = r.queue[1:]
	r.held++
	return b, r.tripped
}

// putBack returns a batch taken by next to the queue; r.mu is held.
func (r *run) putBack(b *batch) {
	r.queue = append(r.queue, b)
	r.held--
	r.changed.Broadcast()
}

func (r *run) requeue(b *batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putBack(b)
}

// retire stops a worker that cannot connect (or keeps losing its
// connection) and puts b, if any, back for the others. When no other
// worker is left, or when the probe (the first attempt of all) failed, it
// opens the breaker instead and the worker stays to fail the queue: retire
// then returns true.
func (r *run) retire(b *batch, e *Error, probe bool) (drain bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b != nil {
		r.putBack(b)
	}
	if probe || r.live == 1 {
		if r.tripped == nil {
			r.tripped = e
			r.cl.log.Warn("relay unavailable: failing the remaining recipients temporarily",
				"batches", len(r.queue), "error", e)
		}
		return true
	}
	r.live--
	return false
}

func (r *run) probeDone() { r.probeOnce.Do(func() { close(r.probed) }) }

// fail reports every recipient of b with e, which finishes b.
func (r *run) fail(b *batch, e *Error) {
	rs := make([]Result, len(b.rcpts))
	for i, rcpt := range b.rcpts {
		rs[i] = Result{Rcpt: rcpt, Err: e}
	}
	r.finish(rs)
}

// finish reports the results of a batch taken by next: it is done with.
func (r *run) finish(rs []Result) {
	r.deliver(rs)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held--
	r.changed.Broadcast()
}

// deliver hands results to the caller's report, one call at a time.
func (r *run) deliver(rs []Result) {
	r.reportMu.Lock()
	defer r.reportMu.Unlock()
	r.report(rs)
}

func tally(rs []Result) (ok, temp, perm int) {
	for _, r := range rs {
		switch {
		case r.Err == nil:
			ok++
		case r.Err.Temporary:
			temp++
		default:
			perm++
		}
	}
	return ok, temp, perm
}
