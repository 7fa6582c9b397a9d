package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/BurntSushi/toml"
)

// Load reads and checks the configuration file at path. It returns the
// configuration (nil when there are errors) and every problem found,
// warnings included.
func Load(path string) (*Config, Problems) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{Message: fmt.Sprintf("cannot read the configuration: %v", err)}}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return Parse(data, abs)
}

// Parse checks a configuration document. Relative paths in it are taken
// relative to the directory of path.
func Parse(data []byte, path string) (*Config, Problems) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Problems{{Line: pe.Position.Line, Message: "TOML syntax: " + pe.Message}}
		}
		return nil, Problems{{Message: "TOML syntax: " + err.Error()}}
	}
	cfg := Default()
	cfg.File = path
	d := &decoder{lines: keyLines(string(data))}
	d.table("", raw, reflect.ValueOf(cfg).Elem())
	v := validator{decoder: d, cfg: cfg, dir: filepath.Dir(path)}
	v.validate()
	sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Line < d.problems[j].Line })
	if d.problems.HasErrors() {
		return nil, d.problems
	}
	return cfg, d.problems
}

// Check validates a configuration built in code (the demo's, tests'),
// resolving its files and keys as Load would.
func Check(cfg *Config) Problems {
	d := &decoder{}
	v := validator{decoder: d, cfg: cfg, dir: filepath.Dir(cfg.File)}
	v.validate()
	return d.problems
}
