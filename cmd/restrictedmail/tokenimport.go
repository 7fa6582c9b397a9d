package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

// legoPrefix is the prefix of LEGO's token files.
const legoPrefix = "LEGOTOKEN"

func runTokenImport(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("token import", "token import --config FILE --format lego [--list ADDRESS] [--ttl 0] FILE.csv", errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	format := fs.String("format", "", "format of the export: lego (columns id, sender, token, hide_sender, recipients)")
	list := fs.String("list", "", "restricted `address` the tokens are for (LEGO's restricted address); default: the only [[lists]]")
	ttl := fs.String("ttl", "0", "validity of the imported tokens from now, e.g. 30d; 0 never expires (as in LEGO)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	switch {
	case *format != "lego":
		return usageErr(fs, "--format lego is required (the only format)")
	case len(pos) != 1:
		return usageErr(fs, "give exactly one CSV file")
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(errOut, "restrictedmail token import: "+format+"\n", args...)
		return exitFailure
	}
	var d config.Duration
	if err := d.UnmarshalText([]byte(*ttl)); err != nil {
		return fail("--ttl: %v", err)
	}
	v := d.D()
	f, err := os.Open(pos[0])
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()
	return withStore(ctx, *path, errOut, func(cfg *config.Config, db *store.DB) int {
		if *list == "" {
			if len(cfg.Lists) != 1 {
				return fail("the configuration has %d restricted addresses: name the one the tokens are for with --list", len(cfg.Lists))
			}
			*list = cfg.Lists[0].Address
		}
		ops := tokenops.New(db, generation.TokenSettingsOf(cfg))
		res, err := ops.ImportLEGO(ctx, tokenops.ImportRequest{List: *list, TTL: &v, CSV: f})
		var rows tokenops.ImportErrors
		switch {
		case errors.As(err, &rows):
			for _, r := range rows {
				fmt.Fprintf(errOut, "%s: %s\n", pos[0], r)
			}
			return fail("%d row(s) refused; nothing imported", len(rows))
		case errors.Is(err, tokenops.ErrUnknownList):
			return fail("--list %s is not a restricted address in %s", *list, cfg.File)
		case err != nil:
			return fail("%v (%d imported before the failure; run the import again to finish)", err, len(res.Imported))
		}
		for _, r := range res.Imported {
			fmt.Fprintf(out, "imported %s (LEGO %s) for %s, sender %s\n", r.ID, r.ExternalRef, r.List, r.Sender)
		}
		fmt.Fprintf(out, "%d token(s) imported, %d already here\n", len(res.Imported), res.Skipped)
		if cfg.Tokens.Prefix != legoPrefix {
			fmt.Fprintf(errOut, "warning: tokens.prefix is %q: the token files LEGO handed out start with %q and are not recognised until tokens.prefix = %q\n",
				cfg.Tokens.Prefix, legoPrefix, legoPrefix)
		}
		return exitOK
	})
}
