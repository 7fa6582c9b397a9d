package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/metrics"
)

// ops is the daemon's operational side: metrics, the [http] endpoint, and
// what /readyz reports.
type ops struct {
	metrics  *metrics.Metrics
	http     *http.Server // nil when [http] listen is ""
	httpAddr net.Addr
	stopping atomic.Bool  // Shutdown has begun: not ready any more
	down     atomic.Int32 // listeners whose Serve has returned
}

// readyTimeout bounds the store check of one /readyz request.
const readyTimeout = 2 * time.Second

// listenHTTP starts the [http] endpoint: /metrics for Prometheus, /healthz
// (the process answers) and /readyz (the store answers and every listener
// is serving) for supervisors and load balancers.
func (d *Daemon) listenHTTP(cfg *config.Config) error {
	if cfg.HTTP.Listen == "" {
		return nil
	}
	ln, err := Listen(cfg.HTTP.Addr, 0, "")
	if err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	d.httpAddr = ln.Addr()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", d.readyz)
	d.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	nets := func() []config.NetworkSpec { return d.Config().HTTP.Networks }
	d.serve("http", allowOnly(ln, nets, d.log.With("component", "http")), func(ln net.Listener) error {
		if err := d.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return nil
}

// HTTPAddr returns the bound address of the [http] endpoint (nil when
// disabled), which tests need when the configuration asked for port 0.
func (d *Daemon) HTTPAddr() net.Addr { return d.httpAddr }

// readyz answers 200 when the store answers and every listener serves, and
// 503 (with what is wrong) otherwise, also once shutdown has begun.
func (d *Daemon) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	var problems []string
	if d.stopping.Load() {
		problems = append(problems, "shutting down")
	}
	if n := d.down.Load(); n > 0 {
		problems = append(problems, fmt.Sprintf("%d listener(s) stopped serving", n))
	}
	if err := d.db.Ping(ctx); err != nil {
		problems = append(problems, "store: "+err.Error())
	}
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		return
	}
	io.WriteString(w, "ready\n")
}

// shutdownHTTP stops the [http] endpoint: it goes last, so that metrics
// stay scrapable while deliveries drain.
func (d *Daemon) shutdownHTTP(ctx context.Context) error {
	if d.http == nil {
		return nil
	}
	err := d.http.Shutdown(ctx)
	if err != nil {
		d.http.Close()
	}
	return err
}

// Metrics returns the daemon's metrics.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }
