package lmtp

import (
	"context"
	"log/slog"
	"net"
	"time"
)

// swap points e at a second endpoint that shares e's configuration, store,
// relay and clock, with its options changed by mod (a guard, a store that
// fails). The first endpoint stays up, unused, until the test ends.
func (e *env) swap(mod func(*Options)) *Server {
	e.t.Helper()
	opts := e.options(slog.New(slog.NewTextHandler(testWriter{e.t}, nil)))
	mod(&opts)
	srv := New(opts)
	e.addr = e.serve(srv)
	return srv
}

// serve runs srv on a loopback port until the test ends and returns its
// address.
func (e *env) serve(srv *Server) string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go srv.Serve(ln)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}
