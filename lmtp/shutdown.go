package lmtp

import (
	"net"
	"sync"
)

// A transaction whose message arrives on an open connection after Shutdown
// began is answered reply.ShuttingDown: Postfix keeps the message and
// hands it over to the next process.

// gate stops the endpoint from taking new work once Shutdown has begun: it
// closes the listeners itself and refuses new transactions, so that the
// WaitGroup of transactions in flight is never added to while Shutdown
// waits on it (a misuse that the race detector reports and that can panic).
type gate struct {
	mu       sync.Mutex
	shutting bool
	lns      []net.Listener
}

// track registers a listener to close at shutdown; false when shutdown has
// begun already.
func (g *gate) track(ln net.Listener) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shutting {
		return false
	}
	g.lns = append(g.lns, ln)
	return true
}

// close begins the shutdown: no new connection, no new delivery.
// Connections already open go on until Close.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shutting {
		return
	}
	g.shutting = true
	for _, ln := range g.lns {
		ln.Close()
	}
}

func (g *gate) closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.shutting
}

// enter registers a transaction in flight, unless shutdown has begun. A
// transaction is in flight from LMTPData until go-smtp has written its
// replies (session.leave): Shutdown closes the connections only then, so
// that a delivery cancelled by it still tells Postfix its 451.
func (s *Server) enter() bool {
	s.gate.mu.Lock()
	defer s.gate.mu.Unlock()
	if s.gate.shutting {
		return false
	}
	s.flight.Add(1)
	return true
}

// leave ends the session's transaction in flight, if any.
func (ss *session) leave() {
	if ss.inFlight {
		ss.inFlight = false
		ss.s.flight.Done()
	}
}
