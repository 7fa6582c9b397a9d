package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and commit are set at build time (Makefile, packaging/build-deb):
//
//	-ldflags "-X main.version=$(packaging/version) -X main.commit=$(git rev-parse HEAD)"
//
// Without them the module version and the VCS revision that the go command
// records in the build info are used.
var (
	version = ""
	commit  = ""
)

func runVersion(_ context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("version", `version

Prints the version, the commit it was built from and the Go version and
platform it was built with.`, errOut)
	if _, err := parseInterspersed(fs, args); err != nil && !errors.Is(err, flag.ErrHelp) {
		return exitUsage
	}
	fmt.Fprintf(out, "restrictedmail %s\ncommit %s\nbuilt with %s %s/%s\n",
		versionString(), commitString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// commitString is the commit set at build time, or the go command's
// vcs.revision (with "-dirty" when the tree had changes), or "unknown".
func commitString() string {
	if commit != "" {
		return commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return "unknown"
	}
	return rev + dirty
}
