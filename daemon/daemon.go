// Package daemon runs `restrictedmail serve`: it opens the store, starts
// the milter and the LMTP endpoint on their listeners, swaps in a new
// configuration on reload, and shuts down gracefully — listeners closed
// first, deliveries in flight given shutdown_timeout to finish.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/lmtp"
	"github.com/restrictedmail/restrictedmail/metrics"
	"github.com/restrictedmail/restrictedmail/milter"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/store"
)

// Daemon is a running `serve`.
type Daemon struct {
	log   *slog.Logger
	db    *store.DB
	state atomic.Pointer[state]
	guard *guard.Guard // slows token guessing; shared by the milter and the LMTP endpoint

	milter     *milter.Server
	lmtp       *lmtp.Server
	milterAddr net.Addr
	lmtpAddr   net.Addr

	errs chan error
	wg   sync.WaitGroup
	ops  // metrics, [http], readiness (http.go)
}

// state is one generation of configuration and what is built from it.
type state struct {
	cfg   *config.Config
	relay *relay.Client
}

// Start opens the store and starts the listeners of cfg. The caller stops
// the daemon with Shutdown; Errors reports a listener that failed.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	db, err := store.Open(ctx, cfg.Store.Path)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, db: db, errs: make(chan error, 3)}
	d.metrics = metrics.New(db, log.With("component", "metrics"))
	st, err := newState(cfg, log, d.metrics)
	if err != nil {
		db.Close()
		return nil, err
	}
	d.state.Store(st)
	d.guard = guard.New(guessLimits(cfg), 0)
	if err := d.listen(cfg); err != nil {
		d.closeListeners()
		db.Close()
		return nil, err
	}
	return d, nil
}

func newState(cfg *config.Config, log *slog.Logger, obs relay.Observer) (*state, error) {
	rc, err := relay.New(cfg.Relay, log)
	if err != nil {
		return nil, fmt.Errorf("setting up the relay client: %w", err)
	}
	return &state{cfg: cfg, relay: rc.WithObserver(obs)}, nil
}

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config { return d.state.Load().cfg }

func (d *Daemon) listen(cfg *config.Config) error {
	if cfg.Milter.Listen != "" {
		ln, err := Listen(cfg.Milter.Addr, cfg.Milter.SocketMode, cfg.Milter.SocketGroup)
		if err != nil {
			return fmt.Errorf("milter listener: %w", err)
		}
		d.milterAddr = ln.Addr()
		d.milter = milter.New(milter.Options{Config: d.Config, Tokens: d.db, Logger: d.log.With("component", "milter"), Observer: d.metrics, Guard: d.guard})
		nets := func() []config.NetworkSpec { return d.Config().Milter.Networks }
		d.serve("milter", allowOnly(ln, nets, d.log.With("component", "milter")), d.milter.Serve)
	}
	if cfg.LMTP.Listen != "" {
		ln, err := Listen(cfg.LMTP.Addr, cfg.LMTP.SocketMode, cfg.LMTP.SocketGroup)
		if err != nil {
			return fmt.Errorf("LMTP listener: %w", err)
		}
		d.lmtpAddr = ln.Addr()
		d.lmtp = lmtp.New(lmtp.Options{
			Config:   d.Config,
			Relay:    func() lmtp.Sender { return d.state.Load().relay },
			Store:    d.db,
			Logger:   d.log,
			Guard:    d.guard,
			Observer: d.metrics,
		})
		d.serve("lmtp", ln, d.lmtp.Serve)
	}
	return d.listenHTTP(cfg)
}

func (d *Daemon) serve(name string, ln net.Listener, serve func(net.Listener) error) {
	d.log.Info("listening", "component", name, "addr", ln.Addr().Network()+":"+ln.Addr().String())
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.down.Add(1) // for /readyz
		if err := serve(ln); err != nil {
			d.errs <- fmt.Errorf("%s: %w", name, err)
		}
	}()
}

// MilterAddr and LMTPAddr return the bound addresses (nil when disabled),
// which tests need when the configuration asked for port 0.
func (d *Daemon) MilterAddr() net.Addr { return d.milterAddr }

// LMTPAddr: see MilterAddr.
func (d *Daemon) LMTPAddr() net.Addr { return d.lmtpAddr }

// Errors delivers a listener's failure; serve stops the daemon on one.
func (d *Daemon) Errors() <-chan error { return d.errs }

// Reload swaps in cfg for new messages. Settings that belong to the
// listeners or the store cannot change without a restart; they are kept
// and named in the returned warnings.
func (d *Daemon) Reload(cfg *config.Config) (warnings []string, err error) {
	st, err := newState(cfg, d.log, d.metrics)
	if err != nil {
		return nil, err
	}
	warnings = keepRestartOnly(cfg, d.Config())
	d.guard.SetLimits(guessLimits(cfg))
	d.state.Store(st)
	return warnings, nil
}

// Shutdown stops accepting, lets deliveries in flight finish until ctx
// ends, then closes everything.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.stopping.Store(true)
	var errs []error
	if d.milter != nil {
		if err := d.milter.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("milter: %w", err))
		}
	}
	if d.lmtp != nil {
		if err := d.lmtp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("lmtp: %w", err))
		}
	}
	if err := d.shutdownHTTP(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	d.wg.Wait()
	if err := d.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing store: %w", err))
	}
	return errors.Join(errs...)
}

// closeListeners undoes a partial Start.
func (d *Daemon) closeListeners() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = d.Shutdown(ctx)
}
