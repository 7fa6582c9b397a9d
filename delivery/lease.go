package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
)

// Several hosts may share one store (store/lease.go). The process that
// fans a delivery out holds its lease and renews it every third of the
// lease while it sends; another process handed the same delivery answers
// 451 (reply.Distributing) until the lease ends, and takes the pending
// recipients over once it has expired because its owner died. Nothing is
// locked in the store while the relay talks: the lease is a row.

// DefaultLease is the lease of Settings.Lease zero.
const DefaultLease = 2 * time.Minute

// errLeaseLost ends a fan-out whose lease another process took over (or
// that could not be renewed before it ran out): sending on would race the
// new owner.
var errLeaseLost = errors.New("the delivery's lease was lost; another host may take it over")

// NewLeaseOwner returns an id for this process's leases: host name, pid
// and random bits, so that neither a restarted process nor another host
// with the same name and pid takes a lease for its own.
func NewLeaseOwner() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

func (s *Settings) lease() time.Duration {
	if s.Lease > 0 {
		return s.Lease
	}
	return DefaultLease
}

// leaseHold renews a delivery's lease while it is sent.
type leaseHold struct {
	ctx    context.Context // the fan-out's: cancelled when the lease is lost
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}
}

// hold starts renewing the lease of id, which this engine holds until
// now+lease, and returns the context to send in. release ends it.
func (e *Engine) hold(ctx context.Context, lease time.Duration, id string) *leaseHold {
	h := &leaseHold{stop: make(chan struct{}), done: make(chan struct{})}
	h.ctx, h.cancel = context.WithCancelCause(ctx)
	valid := e.opts.Now().Add(lease)
	go func() {
		defer close(h.done)
		t := time.NewTicker(lease / 3)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-h.ctx.Done():
				return
			case <-t.C:
			}
			now := e.opts.Now()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lease/3)
			err := e.opts.Store.RenewLease(rctx, id, e.owner, now.Add(lease))
			cancel()
			switch {
			case err == nil:
				valid = now.Add(lease)
			case errors.Is(err, store.ErrLeaseLost):
				h.cancel(errLeaseLost)
				return
			default:
				// The store is unavailable: keep sending while the lease
				// we hold is sure to be ours (with a margin for the
				// clocks of the other hosts), then stop.
				e.log.Warn("renewing a delivery's lease", "delivery", id, "err", err)
				if !now.Add(lease / 3).Before(valid) {
					h.cancel(fmt.Errorf("%w: %w", errLeaseLost, err))
					return
				}
			}
		}
	}()
	return h
}

// lost returns why the fan-out was stopped for the lease, or nil.
func (h *leaseHold) lost() error {
	if err := context.Cause(h.ctx); errors.Is(err, errLeaseLost) {
		return err
	}
	return nil
}

// release stops the renewals and, when free, gives the lease up, so that
// another host handed the message need not wait for it to expire. A
// delivery that completed has no lease left (FinishDelivery clears it in
// the same write).
func (e *Engine) release(ctx context.Context, h *leaseHold, id string, free bool) {
	close(h.stop)
	<-h.done
	h.cancel(nil)
	if !free {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.opts.Store.ReleaseLease(rctx, id, e.owner); err != nil {
		// It expires by itself: another host waits for it, no more.
		e.log.Warn("releasing a delivery's lease", "delivery", id, "err", err)
	}
}
