package main

import (
	"context"
	"fmt"
	"io"

	"github.com/restrictedmail/restrictedmail/store"
)

func runStore(ctx context.Context, args []string, out, errOut io.Writer) int {
	return subcommand("store", args, out, errOut, storeUsage, map[string]func([]string) int{
		"copy": func(a []string) int { return runStoreCopy(ctx, a, out, errOut) },
	})
}

func storeUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  restrictedmail store copy --config FILE --to URL [--password-file FILE]

copy copies the SQLite store that the configuration's store.path names —
tokens, spends, the delivery journal with its bounces and delivery
reports, API keys, the webhook outbox, every table — into the PostgreSQL
database at URL, creating its schema, for moving from one host to several.
Stop restrictedmail first. Rows go in batches, each in one transaction; a
second run copies nothing twice. A row whose key the target holds with
other values is left alone and reported (exit 1). Sign-in links and web
sessions are short-lived and not copied (users of the web page sign in
again); leases of deliveries and claims of webhook messages are copied
empty, so that the new hosts take over at once.

Run "restrictedmail store copy --help" for its flags.
`)
}

func runStoreCopy(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("store copy", "store copy --config FILE --to URL [--password-file FILE]", errOut)
	path := fs.String("config", defaultConfig, "configuration `file` whose store.path names the SQLite store to copy")
	to := fs.String("to", "", "PostgreSQL `URL` to copy into (postgres://USER@HOST/DB?sslmode=verify-full; PG* variables apply)")
	pwFile := fs.String("password-file", "", "`file` with the PostgreSQL password (else the URL's, PGPASSWORD or ~/.pgpass)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(errOut, "restrictedmail store copy: "+format+"\n", a...)
		return exitFailure
	}
	if *to == "" {
		return usageErr(fs, "--to is required")
	}
	cfg := loadConfig(*path, errOut)
	if cfg == nil {
		return exitFailure
	}
	if cfg.Store.Path == "" {
		return fail("%s uses PostgreSQL already (store.url); copy needs store.path, the SQLite store", *path)
	}
	src, err := store.Open(ctx, cfg.Store.Path)
	if err != nil {
		return fail("%v", err)
	}
	defer src.Close()
	dst, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: *to, PasswordFile: *pwFile})
	if err != nil {
		return fail("%v", err)
	}
	defer dst.Close()
	fmt.Fprintf(out, "copying %s into %s\n", cfg.Store.Path, store.RedactURL(*to))
	conflicts := 0
	_, err = src.CopyTo(ctx, dst, func(ct store.CopyTable) {
		if ct.Skipped != "" {
			fmt.Fprintf(out, "%-22s %s\n", ct.Table, ct.Skipped)
			return
		}
		fmt.Fprintf(out, "%-22s %7d copied %7d already there %5d conflicts\n", ct.Table, ct.Copied, ct.Present, len(ct.Conflicts))
		for _, c := range ct.Conflicts {
			fmt.Fprintf(out, "  conflict: %s %s\n", ct.Table, c)
		}
		conflicts += len(ct.Conflicts)
	})
	if err != nil {
		return fail("%v", err)
	}
	if conflicts > 0 {
		fmt.Fprintf(errOut, "restrictedmail store copy: %d row(s) left alone: the target holds other values under their keys\n", conflicts)
		return exitFailure
	}
	return exitOK
}
