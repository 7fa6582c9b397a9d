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
	// The settings only a restart applies are kept here, before Reload,
	// to log each with its values; Reload then finds nothing more to keep.
	kept := config.KeepRestartOnly(cfg, d.Config())
	warnings, err := d.Reload(cfg)
	if err != nil {
		d.metrics.Reload(false)
		d.log.Error("reload refused; keeping the configuration in force", "config", path, "err", err)
		return fmt.Errorf("reload refused: %w", err)
	}
	for _, c := range kept {
		d.log.Warn("reload: this setting needs a restart; keeping the value in force", "key", c.Key, "in_force", c.InForce, "ignored", c.Ignored)
	}
	for _, w := range warnings {
		d.log.Warn("reload", "note", w)
	}
	d.metrics.Reload(true)
	d.log.Info("configuration reloaded", "config", path, "lists", len(cfg.Lists))
	return nil
}

// keepRestartOnly carries the settings that need a restart (tagged
// reload:"restart" in package config) from old into cfg, so that the
// configuration in force says what is really in use — the spool directory
// in use among them — and returns one warning per setting kept:
// "lmtp.socket_mode changed from 0660 to 0600; restart to apply it
// (keeping 0660)".
func keepRestartOnly(cfg, old *config.Config) (warnings []string) {
	for _, c := range config.KeepRestartOnly(cfg, old) {
		warnings = append(warnings, c.String())
	}
	return warnings
}
