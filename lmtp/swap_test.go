package lmtp

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/restrictedmail/restrictedmail/config"
)

// swap points e at a second endpoint that shares e's configuration, store,
// relay and clock, with its options changed by mod (a guard, a store that
// fails). The first endpoint stays up, unused, until the test ends.
func (e *env) swap(mod func(*Options)) *Server {
	e.t.Helper()
	opts := Options{
		Config: func() *config.Config { return e.cfg.Load() },
		Relay:  func() Sender { return e.relay },
		Store:  e.db,
		Logger: slog.New(slog.NewTextHandler(testWriter{e.t}, nil)),
		Now:    func() time.Time { return *e.now.Load() },
	}
	mod(&opts)
	srv := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	go srv.Serve(ln)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}
