// Package lmtp is the after-queue adapter: the LMTP endpoint that Postfix's
// transport_maps hands accepted mail for restricted addresses to. It speaks
// the protocol — recipients resolved against the rules, the message
// spooled, one reply per recipient — and hands each restricted address of
// a transaction to the delivery engine (package delivery), which judges it
// with the same decision as the milter, spends the token and fans the copy
// out exactly once per recipient.
//
// Replies are per recipient (RFC 2033 §4.2). A reply of 250 is given only
// once every recipient is delivered, permanently failed, or given up on and
// that is recorded in the store: an acknowledged message is never lost.
// Anything temporary (relay, store, spool) is a 4xx, so that Postfix keeps
// the message and hands it over again.
package lmtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/reply"
)

// Options configure a Server.
type Options struct {
	// Settings returns the configuration generation in force. It is read
	// once per transaction, so that a reload applies to the next message
	// and never mixes into one under way.
	Settings func() *delivery.Settings
	Store    delivery.Store
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
	// DeliveryTimeout bounds one delivery's fan-out (delivery.Options.Timeout).
	DeliveryTimeout time.Duration
	// Observer is told how deliveries end (metrics); nil: none.
	Observer delivery.Observer
	// Guard slows down token guessing by envelope sender (shared with the
	// milter); nil: no limit.
	Guard policy.Guard
	// Bounces handles mail to the lists' bounce addresses; nil: those
	// addresses are refused like any other that is no list.
	Bounces BounceHandler
	// ClientAllowed says whether a client may connect; nil: every client.
	ClientAllowed func(net.Addr) bool

	// Listener limits and timeouts, fixed for the server's lifetime.
	Hostname       string // the greeting's name
	MaxMessageSize int64  // 0: no limit
	MaxRecipients  int    // per transaction; 0: no limit
	ReadTimeout    time.Duration
	WriteTimeout   time.Duration
}

// Server is the LMTP endpoint.
type Server struct {
	opts   Options
	log    *slog.Logger
	engine *delivery.Engine
	smtp   *smtp.Server
	flight sync.WaitGroup // transactions in progress, until their replies are written
	gate   gate           // listeners, and whether Shutdown has begun (shutdown.go)

	// base is the parent of every delivery's context; cancelling it makes
	// deliveries in flight stop and answer 4xx (hard shutdown).
	base   context.Context
	cancel context.CancelFunc
}

// New returns an endpoint.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "lmtp")}
	s.engine = delivery.New(delivery.Options{
		Store: opts.Store, Logger: s.log, Now: opts.Now, Timeout: opts.DeliveryTimeout,
		Observer: opts.Observer, Guard: opts.Guard,
	})
	s.base, s.cancel = context.WithCancel(context.Background())
	srv := smtp.NewServer(backend{s})
	srv.LMTP = true
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageSize
	srv.MaxRecipients = opts.MaxRecipients
	srv.ReadTimeout = opts.ReadTimeout
	srv.WriteTimeout = opts.WriteTimeout
	srv.EnableSMTPUTF8 = true // RFC 6531; go-smtp always offers 8BITMIME
	srv.ErrorLog = errorLog{s.log}
	s.smtp = srv
	return s
}

// Serve accepts LMTP connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if !s.gate.track(ln) {
		ln.Close()
		return nil
	}
	if err := s.cleanSpool(); err != nil {
		s.log.Warn("cleaning the spool directory", "err", err)
	}
	err := s.smtp.Serve(ln)
	if errors.Is(err, smtp.ErrServerClosed) || s.gate.closed() {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and lets deliveries in flight
// finish. When ctx ends first, the deliveries still running are cancelled:
// each records what it sent, answers 4xx (Postfix keeps the message), and
// the connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	// Not go-smtp's Shutdown: run beside its Close (below) it could close
	// the same channel twice and panic, and after it Close no longer
	// closes the idle connections.
	s.gate.close()
	done := make(chan struct{})
	go func() { s.flight.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("deliveries still running at shutdown were cancelled: %w", ctx.Err())
		s.cancel()
		<-done
	}
	s.cancel()
	// Idle connections (Postfix caches LMTP connections) would otherwise
	// hold Shutdown until their read timeout.
	if cerr := s.smtp.Close(); cerr != nil && !errors.Is(cerr, smtp.ErrServerClosed) && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	return err
}

type backend struct{ s *Server }

// NewSession refuses clients outside the allowed networks. A loopback
// listener (the default) is reachable only from this host anyway; the
// check is the second lock on the door.
func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if allowed := b.s.opts.ClientAllowed; allowed != nil && !allowed(c.Conn().RemoteAddr()) {
		b.s.log.Warn("refused LMTP client outside lmtp.allowed_networks", "client", c.Conn().RemoteAddr().String())
		return nil, smtpError(reply.AccessDenied)
	}
	return &session{s: b.s}, nil
}

// errorLog routes go-smtp's internal errors to slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.l.Error(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.l.Error(fmt.Sprint(v...)) }
