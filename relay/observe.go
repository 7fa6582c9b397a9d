package relay

import "time"

// Observer is told what happens on the relay connections, for metrics. A
// Client without one (New's) reports to nobody. Its methods are called
// from the fan-out's workers, concurrently; they must not block.
type Observer interface {
	// RelayConnect is called after each connection attempt (TCP, TLS,
	// EHLO, AUTH) with its duration; err is nil when the connection is
	// ready for transactions.
	RelayConnect(d time.Duration, err *Error)
	// RelayTransaction is called after each transaction (MAIL to the reply
	// after the final dot) with its duration, the number of recipients the
	// relay took, and its errors: each refused recipient's, and the one
	// that failed MAIL, DATA or the connection — each error once, however
	// many recipients it failed.
	RelayTransaction(d time.Duration, delivered int, errs []*Error)
}

// WithObserver returns a copy of c that reports to o.
func (c *Client) WithObserver(o Observer) *Client {
	cp := *c
	cp.obs = o
	return &cp
}

func (c *Client) observeConnect(start time.Time, e *Error) {
	if c.obs != nil {
		c.obs.RelayConnect(time.Since(start), e)
	}
}

func (c *Client) observeTransaction(start time.Time, o outcome) {
	if c.obs == nil {
		return
	}
	delivered := 0
	var errs []*Error
	seen := map[*Error]bool{}
	for _, r := range o.results {
		switch {
		case r.Err == nil:
			delivered++
		case !seen[r.Err]:
			seen[r.Err] = true
			errs = append(errs, r.Err)
		}
	}
	for _, e := range []*Error{o.refused, o.lost} {
		if e != nil && !seen[e] {
			seen[e] = true
			errs = append(errs, e)
		}
	}
	c.obs.RelayTransaction(time.Since(start), delivered, errs)
}
