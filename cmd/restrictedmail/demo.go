package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/restrictedmail/restrictedmail/internal/demo"
)

// runDemo runs internal/demo: the main job without Postfix.
func runDemo(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("demo", "demo [--keep] [-v]", errOut)
	keep := fs.Bool("keep", false, "keep the demo's temporary directory")
	verbose := fs.Bool("v", false, "show the daemon's log")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	dir, err := os.MkdirTemp("", "restrictedmail-demo-")
	if err != nil {
		fmt.Fprintf(errOut, "restrictedmail demo: %v\n", err)
		return exitFailure
	}
	if *keep {
		fmt.Fprintf(out, "demo directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logOut := io.Discard
	if *verbose {
		logOut = errOut
	}
	if err := demo.Run(ctx, dir, out, slog.New(slog.NewTextHandler(logOut, nil))); err != nil {
		fmt.Fprintf(errOut, "restrictedmail demo: %v\n", err)
		return exitFailure
	}
	return exitOK
}
