package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/restrictedmail/restrictedmail/config"
)

const defaultConfig = config.DefaultPath

// newFlags returns a FlagSet that writes its usage to errOut and does not
// exit. Go's flag package takes -flag and --flag alike.
func newFlags(name, synopsis string, errOut io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprintf(errOut, "Usage: restrictedmail %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	if sink, ok := errOut.(*flagSink); ok {
		sink.add(fs, synopsis) // being documented (docs.go)
	}
	return fs
}

// parseInterspersed parses flags that may come before or after positional
// arguments ("token revoke ID --config F"), which the flag package alone
// does not allow. It returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		// Parse consumes a "--" terminator itself, so it never shows up in
		// rest: look at what was consumed. Everything after it is
		// positional, however many arguments follow.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageErr reports a usage problem the way flag does, and returns exitUsage.
func usageErr(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(fs.Output(), "restrictedmail %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

// flagExit turns a flag parse error into an exit code: -help is success.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// loadConfig loads the configuration and prints its problems to errOut.
// It returns nil when the file has errors.
func loadConfig(path string, errOut io.Writer) *config.Config {
	cfg, problems := config.Load(path)
	for _, p := range problems {
		fmt.Fprintf(errOut, "%s: %s\n", path, p)
	}
	return cfg
}

// newLogger builds the process logger from the [log] section.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// subcommand runs the subcommand of group that args start with, or prints
// usage: to out for help, to errOut (exit 2) for a missing or unknown one.
func subcommand(group string, args []string, out, errOut io.Writer, usage func(io.Writer), subs map[string]func(args []string) int) int {
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	if run := subs[sub]; run != nil {
		return run(args)
	}
	switch sub {
	case "help", "-h", "-help", "--help":
		usage(out)
		return exitOK
	case "":
	default:
		fmt.Fprintf(errOut, "restrictedmail %s: unknown subcommand %q\n\n", group, sub)
	}
	usage(errOut)
	return exitUsage
}

// oneID parses the arguments of a command that takes --config and exactly
// one ID (what names it in the error, with where to find one). ok is false
// when the command ends here, with exit.
func oneID(name, synopsis, what string, args []string, errOut io.Writer) (configPath, id string, exit int, ok bool) {
	fs := newFlags(name, synopsis, errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return "", "", flagExit(err), false
	}
	if len(pos) != 1 {
		return "", "", usageErr(fs, "give exactly one %s", what), false
	}
	return *path, strings.TrimSpace(pos[0]), 0, true
}
