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

	"github.com/restrictedmail/restrictedmail/bounce"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/lmtp"
	"github.com/restrictedmail/restrictedmail/metrics"
	"github.com/restrictedmail/restrictedmail/milter"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/store"
)

// Daemon is a running `serve`.
type Daemon struct {
	log   *slog.Logger
	db    *store.DB
	gen   atomic.Pointer[generation.Generation] // the configuration in force and what is built from it
	guard *guard.Guard                          // slows token guessing; shared by the milter and the LMTP endpoint

	milter     *milter.Server
	lmtp       *lmtp.Server
	milterAddr net.Addr
	lmtpAddr   net.Addr

	errs    chan error
	wg      sync.WaitGroup
	ops     // metrics, [http], readiness (http.go)
	apiSide // [api] and [[webhooks]] (api.go)
	reportSide
}

// Start opens the store and starts the listeners of cfg. The caller stops
// the daemon with Shutdown; Errors reports a listener that failed.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	db, err := generation.OpenStore(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, db: db, errs: make(chan error, 4)}
	d.metrics = metrics.New(db, log.With("component", "metrics"))
	gen, err := generation.New(cfg, log, d.metrics)
	if err != nil {
		db.Close()
		return nil, err
	}
	d.gen.Store(gen)
	d.guard = guard.New(generation.GuessLimits(cfg), 0)
	if err := d.listen(cfg); err != nil {
		d.closeListeners()
		db.Close()
		return nil, err
	}
	if err := d.startAPI(ctx, cfg); err != nil {
		d.closeListeners()
		db.Close()
		return nil, err
	}
	d.startReports(cfg)
	return d, nil
}

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config { return d.gen.Load().Config }

// rules and settings are the generation in force, for the milter (at each
// MAIL FROM) and the LMTP endpoint (at each transaction).
func (d *Daemon) rules() *policy.Rules         { return d.gen.Load().Rules }
func (d *Daemon) settings() *delivery.Settings { return d.gen.Load().Delivery }
func (d *Daemon) lmtpClientAllowed(a net.Addr) bool {
	return config.ClientAllowed(a, d.Config().LMTP.Networks)
}

func (d *Daemon) listen(cfg *config.Config) error {
	if cfg.Milter.Listen != "" {
		ln, err := Listen(cfg.Milter.Addr, cfg.Milter.SocketMode, cfg.Milter.SocketGroup)
		if err != nil {
			return fmt.Errorf("milter listener: %w", err)
		}
		d.milterAddr = ln.Addr()
		d.milter = milter.New(milter.Options{
			Rules: d.rules, Tokens: d.db, Journal: d.db, Logger: d.log.With("component", "milter"), Observer: d.metrics, Guard: d.guard,
			ReadTimeout: cfg.Milter.ReadTimeout.D(), WriteTimeout: cfg.Milter.WriteTimeout.D(),
		})
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
			Settings:       d.settings,
			Store:          d.db,
			Logger:         d.log,
			Guard:          d.guard,
			Observer:       d.metrics,
			Bounces:        bounce.New(bounce.Options{Store: d.db, Logger: d.log.With("component", "bounces"), Observer: d.metrics}),
			ClientAllowed:  d.lmtpClientAllowed,
			Hostname:       cfg.Hostname,
			MaxMessageSize: cfg.LMTP.MaxMessageSize,
			MaxRecipients:  cfg.LMTP.MaxRecipients,
			ReadTimeout:    cfg.LMTP.ReadTimeout.D(),
			WriteTimeout:   cfg.LMTP.WriteTimeout.D(),
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
	// What needs a restart is kept first: the generation is built from it
	// (the spool directory in use, for one).
	warnings = keepRestartOnly(cfg, d.Config())
	gen, err := generation.New(cfg, d.log, d.metrics)
	if err != nil {
		return nil, err
	}
	d.guard.SetLimits(generation.GuessLimits(cfg))
	d.gen.Store(gen)
	warnings = append(warnings, d.reloadAPI(cfg)...)
	return warnings, nil
}

// Shutdown stops accepting, lets deliveries in flight finish until ctx
// ends, then closes everything.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.stopping.Store(true)
	var errs []error
	if err := d.shutdownAPI(ctx); err != nil {
		errs = append(errs, fmt.Errorf("api: %w", err))
	}
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
	d.stopWebhooks()
	d.stopReports()
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
