package main

import (
	"context"
	"fmt"
	"io"

	"github.com/restrictedmail/restrictedmail/config"
)

func runCheckConfig(_ context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("check-config", "check-config [--config FILE]", errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	_, problems := config.Load(*path)
	for _, p := range problems {
		fmt.Fprintf(out, "%s: %s\n", *path, p)
	}
	if problems.HasErrors() {
		n := 0
		for _, p := range problems {
			if !p.Warning {
				n++
			}
		}
		fmt.Fprintf(out, "%s: %d error(s)\n", *path, n)
		return exitFailure
	}
	fmt.Fprintf(out, "%s: OK\n", *path)
	return exitOK
}
