package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/daemon"
)

func runServe(ctx context.Context, args []string, _, errOut io.Writer) int {
	fs := newFlags("serve", "serve [--config FILE]", errOut)
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
	d, err := daemon.Start(ctx, cfg, log)
	if err != nil {
		log.Error("starting", "err", err)
		return exitFailure
	}
	log.Info("restrictedmail started", "version", versionString(), "config", *path, "lists", len(cfg.Lists))

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
			reload(d, *path, log)
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

// reload re-reads the configuration (and the recipients files). A file
// with errors is refused and the configuration in force kept.
func reload(d *daemon.Daemon, path string, log *slog.Logger) {
	cfg, problems := config.Load(path)
	if problems.HasErrors() {
		log.Error("reload refused: the configuration has errors; keeping the one in force", "errors", problems.Error())
		return
	}
	for _, p := range problems {
		log.Warn("configuration", "problem", p.String())
	}
	warnings, err := d.Reload(cfg)
	if err != nil {
		log.Error("reload refused; keeping the configuration in force", "err", err)
		return
	}
	for _, w := range warnings {
		log.Warn("reload", "note", w)
	}
	log.Info("configuration reloaded", "config", path, "lists", len(cfg.Lists))
}
