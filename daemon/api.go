package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/restrictedmail/restrictedmail/api"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/tokenops"
	"github.com/restrictedmail/restrictedmail/web"
	"github.com/restrictedmail/restrictedmail/webhook"
)

// apiSide is the HTTP API for portals ([api]) and the webhook dispatcher
// ([[webhooks]]).
type apiSide struct {
	api     *api.Server
	apiHTTP *http.Server // nil when [api] listen is ""
	apiAddr net.Addr
	apiTLS  bool                            // TLS was on at start (turning it on or off needs a restart)
	cert    atomic.Pointer[tls.Certificate] // the certificate in force; a reload reads it again
	hooks   *webhook.Dispatcher
	web     *web.Server // nil unless [web] enabled (web.go)
}

// startAPI starts the API listener and the webhook dispatcher of cfg.
func (d *Daemon) startAPI(ctx context.Context, cfg *config.Config) error {
	d.hooks = webhook.New(webhook.Options{
		Store: d.db, Logger: d.log.With("component", "webhook"), Observer: d.metrics.Webhooks(d.db),
	})
	if err := d.hooks.SetEndpoints(ctx, generation.Webhooks(cfg)); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	if cfg.API.Listen == "" {
		return nil
	}
	ln, err := Listen(cfg.API.Addr, 0o660, "")
	if err != nil {
		return fmt.Errorf("API listener: %w", err)
	}
	d.apiAddr = ln.Addr()
	alog := d.log.With("component", "api")
	d.api = api.New(api.Options{
		Store:    d.db,
		Settings: func() tokenops.Settings { return generation.TokenSettings(d.gen.Load()) },
		Limits:   generation.APILimits(cfg),
		Logger:   alog,
	})
	handler, err := d.webHandler(cfg)
	if err != nil {
		ln.Close()
		return fmt.Errorf("web page: %w", err)
	}
	nets := func() []config.NetworkSpec { return d.Config().API.Networks }
	ln = allowOnly(ln, nets, alog)
	if cfg.API.TLS() {
		d.apiTLS = true
		d.cert.Store(cfg.API.Certificate)
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return d.cert.Load(), nil },
		})
	}
	d.apiHTTP = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(alog.Handler(), slog.LevelWarn),
	}
	d.serve("api", ln, func(ln net.Listener) error {
		if err := d.apiHTTP.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return nil
}

// reloadAPI applies a new configuration's API limits, certificate and
// webhook endpoints.
func (d *Daemon) reloadAPI(cfg *config.Config) (warnings []string) {
	if d.api != nil {
		d.api.SetLimits(generation.APILimits(cfg))
		switch {
		case cfg.API.TLS() != d.apiTLS:
			warnings = append(warnings, "api TLS turned on or off; restart to apply it (keeping the listener as it is)")
		case d.apiTLS:
			d.cert.Store(cfg.API.Certificate)
		}
	}
	if d.hooks != nil {
		if err := d.hooks.SetEndpoints(context.Background(), generation.Webhooks(cfg)); err != nil {
			warnings = append(warnings, fmt.Sprintf("webhooks: keeping the endpoints in force: %v", err))
		}
	}
	return warnings
}

// shutdownAPI stops accepting API requests and lets those in flight end.
func (d *Daemon) shutdownAPI(ctx context.Context) error {
	if d.apiHTTP == nil {
		return nil
	}
	err := d.apiHTTP.Shutdown(ctx)
	if err != nil {
		d.apiHTTP.Close()
	}
	d.stopWeb()
	return err
}

// stopWebhooks stops the dispatcher; what is queued is sent after the
// next start.
func (d *Daemon) stopWebhooks() {
	if d.hooks != nil {
		d.hooks.Stop()
	}
}

// APIAddr returns the bound address of the API (nil when disabled), which
// tests need when the configuration asked for port 0.
func (d *Daemon) APIAddr() net.Addr { return d.apiAddr }
