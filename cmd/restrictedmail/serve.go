package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/restrictedmail/restrictedmail/daemon"
)

func runServe(ctx context.Context, args []string, _, errOut io.Writer) int {
	fs := newFlags("serve", `serve [--config FILE]

Runs the milter, the LMTP endpoint and, when [http] listen is set, the
metrics and health endpoint, in the foreground, logging to stderr.
Signals: SIGHUP re-reads the configuration and the recipients files (a
file with errors is refused and the configuration in force kept);
SIGTERM or SIGINT stop accepting and let deliveries in flight finish for
lmtp.shutdown_timeout.`, errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	cfg := loadConfig(*path, errOut)
	if cfg == nil {
		return exitFailure
	}
	log := newLogger(cfg, errOut)
	daemon.RouteMilterWarnings(log) // once per process, before any milter runs
	d, err := daemon.Start(ctx, cfg, log)
	if err != nil {
		log.Error("starting", "err", err)
		return exitFailure
	}
	log.Info("restrictedmail started", "version", versionString(), "config", *path, "lists", len(cfg.Lists))
	go logPostfixProblems(ctx, cfg, log)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	code := exitOK
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-d.Errors():
			log.Error("listener failed", "err", err)
			code = exitFailure
			break loop
		case <-hup:
			_ = d.ReloadFile(*path) // it logs; a refusal keeps the configuration in force
		}
	}
	log.Info("shutting down", "timeout", d.Config().LMTP.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), d.Config().LMTP.ShutdownTimeout.D())
	defer cancel()
	if err := d.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	log.Info("stopped")
	return code
}
