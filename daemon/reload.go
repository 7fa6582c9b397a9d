package daemon

import (
	"errors"
	"fmt"

	"github.com/restrictedmail/restrictedmail/config"
)

// ErrReloadRefused is returned by ReloadFile for a configuration with
// errors; the one in force is kept.
var ErrReloadRefused = errors.New("reload refused: the configuration has errors; keeping the one in force")

// ReloadFile re-reads the configuration at path — and with it the
// recipients files it names — and swaps it in for the next message
// (SIGHUP). Connections and deliveries in flight keep the configuration
// they started with; nothing is closed. A file with errors is refused: the
// errors are logged, the refusal counted in the metrics, and the
// configuration in force kept.
func (d *Daemon) ReloadFile(path string) error {
	cfg, problems := config.Load(path)
	if problems.HasErrors() {
		d.metrics.Reload(false)
		d.log.Error(ErrReloadRefused.Error(), "config", path, "errors", problems.Error())
		return fmt.Errorf("%w:\n%s", ErrReloadRefused, problems.Error())
	}
	for _, p := range problems {
		d.log.Warn("configuration", "problem", p.String())
	}
	warnings, err := d.Reload(cfg)
	if err != nil {
		d.metrics.Reload(false)
		d.log.Error("reload refused; keeping the configuration in force", "config", path, "err", err)
		return fmt.Errorf("reload refused: %w", err)
	}
	for _, w := range warnings {
		d.log.Warn("reload", "note", w)
	}
	d.metrics.Reload(true)
	d.log.Info("configuration reloaded", "config", path, "lists", len(cfg.Lists))
	return nil
}

// keepRestartOnly carries the settings that need a restart from old into
// cfg, so that the configuration in force says what is really in use (the
// spool directory follows store.path, for one), and names them.
func keepRestartOnly(cfg, old *config.Config) (warnings []string) {
	if cfg.Store.Path != old.Store.Path || cfg.SpoolDir() != old.SpoolDir() {
		warnings = append(warnings, "store.path or lmtp.spool_dir changed; restart to use "+cfg.Store.Path)
		cfg.Store.Path, cfg.LMTP.SpoolDir = old.Store.Path, old.SpoolDir()
	}
	if cfg.Milter.Listen != old.Milter.Listen || cfg.LMTP.Listen != old.LMTP.Listen || cfg.HTTP.Listen != old.HTTP.Listen {
		warnings = append(warnings, "a listen address changed; restart to use it")
		cfg.Milter.Listen, cfg.Milter.Addr = old.Milter.Listen, old.Milter.Addr
		cfg.LMTP.Listen, cfg.LMTP.Addr = old.LMTP.Listen, old.LMTP.Addr
		cfg.HTTP.Listen, cfg.HTTP.Addr = old.HTTP.Listen, old.HTTP.Addr
	}
	if cfg.LMTP.MaxMessageSize != old.LMTP.MaxMessageSize || cfg.LMTP.MaxRecipients != old.LMTP.MaxRecipients {
		warnings = append(warnings, "lmtp limits changed; restart to apply them")
		cfg.LMTP.MaxMessageSize, cfg.LMTP.MaxRecipients = old.LMTP.MaxMessageSize, old.LMTP.MaxRecipients
	}
	// The servers take their connection timeouts when they are built.
	if cfg.Milter.ReadTimeout != old.Milter.ReadTimeout || cfg.Milter.WriteTimeout != old.Milter.WriteTimeout ||
		cfg.LMTP.ReadTimeout != old.LMTP.ReadTimeout || cfg.LMTP.WriteTimeout != old.LMTP.WriteTimeout {
		warnings = append(warnings, "a listener's read_timeout or write_timeout changed; restart to apply it")
		cfg.Milter.ReadTimeout, cfg.Milter.WriteTimeout = old.Milter.ReadTimeout, old.Milter.WriteTimeout
		cfg.LMTP.ReadTimeout, cfg.LMTP.WriteTimeout = old.LMTP.ReadTimeout, old.LMTP.WriteTimeout
	}
	return warnings
}
