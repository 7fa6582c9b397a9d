// Package lmtp is the after-queue adapter: the LMTP endpoint that Postfix's
// transport_maps hands accepted mail for restricted addresses to. For each
// restricted address of a transaction it validates the token again (with
// the same policy.Check as the milter), spends it, rewrites and signs the
// message, and fans it out through the relay — exactly once per recipient,
// however often Postfix hands the same message over (see deliver.go).
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
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/store"
)

// Store is what the endpoint needs from the store: token lookup and the
// delivery journal. *store.DB satisfies it.
type Store interface {
	policy.Tokens
	Delivery(ctx context.Context, id string) (store.Delivery, error)
	BeginDelivery(ctx context.Context, d store.Delivery, rcpts []string) (store.Delivery, bool, error)
	PendingRecipients(ctx context.Context, id string) ([]string, error)
	RecordOutcomes(ctx context.Context, id string, outs []store.Outcome, now time.Time) error
	FinishDelivery(ctx context.Context, id, detail string, now time.Time) (store.Counts, error)
	DeliveryCounts(ctx context.Context, id string) (store.Counts, error)
}

// Sender fans one message out; *relay.Client satisfies it.
type Sender interface {
	Send(ctx context.Context, from string, rcpts []string, body func() io.Reader, report func([]relay.Result))
}

// Options configure a Server.
type Options struct {
	// Config returns the current configuration. It is read once per
	// transaction, so that a reload applies to the next message.
	Config func() *config.Config
	// Relay returns the relay client for the current configuration.
	Relay  func() Sender
	Store  Store
	Logger *slog.Logger
	Now    func() time.Time // nil: time.Now
	// DeliveryTimeout bounds one delivery's fan-out, so that we answer
	// before Postfix's lmtp_data_done_timeout (600s) gives up on us and
	// hands the message over again while we are still sending. Zero: 8m.
	DeliveryTimeout time.Duration
	// Observer is told how deliveries end (metrics); nil: none.
	Observer Observer
	// Guard slows down token guessing by envelope sender (shared with the
	// milter); nil: no limit. Postfix is the LMTP client, so the client
	// address says nothing here.
	Guard *guard.Guard
}

// Server is the LMTP endpoint.
type Server struct {
	opts   Options
	log    *slog.Logger
	obs    Observer // never nil
	smtp   *smtp.Server
	locks  keyedMutex
	flight sync.WaitGroup // transactions in progress, until their replies are written
	gate   gate           // listeners, and whether Shutdown has begun (shutdown.go)

	// base is the parent of every delivery's context; cancelling it makes
	// deliveries in flight stop and answer 4xx (hard shutdown).
	base   context.Context
	cancel context.CancelFunc
}

// New returns an endpoint for the configuration Options.Config returns now
// (listener limits and timeouts are fixed for the server's lifetime).
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DeliveryTimeout == 0 {
		opts.DeliveryTimeout = 8 * time.Minute
	}
	cfg := opts.Config()
	s := &Server{opts: opts, log: opts.Logger.With("component", "lmtp"), obs: opts.Observer}
	if s.obs == nil {
		s.obs = noObserver{}
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	srv := smtp.NewServer(backend{s})
	srv.LMTP = true
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.LMTP.MaxMessageSize
	srv.MaxRecipients = cfg.LMTP.MaxRecipients
	srv.ReadTimeout = cfg.LMTP.ReadTimeout.D()
	srv.WriteTimeout = cfg.LMTP.WriteTimeout.D()
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
	cfg := b.s.opts.Config()
	if !config.ClientAllowed(c.Conn().RemoteAddr(), cfg.LMTP.Networks) {
		b.s.log.Warn("refused LMTP client outside lmtp.allowed_networks", "client", c.Conn().RemoteAddr().String())
		return nil, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Access denied"}
	}
	return &session{s: b.s}, nil
}

// errorLog routes go-smtp's internal errors to slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.l.Error(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.l.Error(fmt.Sprint(v...)) }

// keyedMutex serialises work per key (a delivery id): Postfix may hand the
// same message over on a second connection while the first is still
// sending (after its own timeout), and the second must see the first's
// journal, not race it.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
