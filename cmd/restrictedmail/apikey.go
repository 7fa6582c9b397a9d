package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/apikey"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/store"
)

// The keys of the HTTP API. They are managed here, in the store, by a
// command that works beside a running daemon (as `token` does): the
// daemon looks each request's key up in the store.

func runAPIKey(ctx context.Context, args []string, out, errOut io.Writer) int {
	return subcommand("apikey", args, out, errOut, apikeyUsage, map[string]func([]string) int{
		"create": func(a []string) int { return runAPIKeyCreate(ctx, a, out, errOut) },
		"list":   func(a []string) int { return runAPIKeyList(ctx, a, out, errOut) },
		"revoke": func(a []string) int { return runAPIKeyRevoke(ctx, a, out, errOut) },
	})
}

func apikeyUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  restrictedmail apikey create --config FILE --name NAME --list ADDRESS... --scope issue,read,revoke [--expires 365d]
  restrictedmail apikey list   --config FILE
  restrictedmail apikey revoke --config FILE ID|NAME

create prints the key (rmk_…) alone on the first line of stdout, once: the
store keeps only its hash. --list '*' covers every restricted address.
`)
}

func runAPIKeyCreate(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("apikey create", "apikey create --config FILE --name NAME --list ADDRESS... --scope SCOPES [--expires 365d]", errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	name := fs.String("name", "", "`name` of the key, for the logs and apikey list (required, unique)")
	var lists stringList
	fs.Var(&lists, "list", "restricted `address` the key may act on, repeatable; '*' for every one (required)")
	scopes := fs.String("scope", "", "what the key may do, comma-separated: issue, read, revoke (required)")
	expires := fs.String("expires", "", "validity, e.g. 365d; default: never expires")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected argument %q", pos[0])
	case strings.TrimSpace(*name) == "":
		return usageErr(fs, "--name is required")
	case len(lists) == 0:
		return usageErr(fs, "--list is required")
	case *scopes == "":
		return usageErr(fs, "--scope is required")
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(errOut, "restrictedmail apikey create: "+format+"\n", args...)
		return exitFailure
	}
	sc, err := apikey.ParseScopes(*scopes)
	if err != nil {
		return fail("--scope: %v", err)
	}
	if strings.ContainsFunc(*name, func(r rune) bool { return r < ' ' || r == 0x7f }) || len(*name) > 100 {
		return fail("--name: use up to 100 printable characters")
	}
	now := time.Now().UTC().Truncate(time.Second)
	k := store.APIKey{ID: apikey.NewID(), Name: strings.TrimSpace(*name), Scopes: sc, Created: now}
	if *expires != "" {
		var d config.Duration
		if err := d.UnmarshalText([]byte(*expires)); err != nil || d.D() <= 0 {
			return fail("--expires: write a validity such as 365d or 720h")
		}
		k.Expires = now.Add(d.D())
	}
	return withStore(ctx, *path, errOut, func(cfg *config.Config, db *store.DB) int {
		for _, l := range lists {
			if l == apikey.AllLists {
				k.Lists = []string{apikey.AllLists}
				break
			}
			a, err := address.Parse(l)
			if err != nil {
				return fail("--list %q: %v", l, err)
			}
			if cfg.List(a) == nil {
				return fail("--list %s is not a restricted address in %s", a, cfg.File)
			}
			k.Lists = append(k.Lists, a.Key())
		}
		key, h := apikey.Generate()
		k.Hash = h
		if err := db.AddAPIKey(ctx, k); err != nil {
			if errors.Is(err, store.ErrAPIKeyName) {
				return fail("a key named %q exists; revoke it or choose another name", k.Name)
			}
			return fail("%v", err)
		}
		fmt.Fprintln(out, key)
		fmt.Fprintf(out, "id %s, name %s, lists %s, scopes %s, %s\n", k.ID, k.Name, strings.Join(k.Lists, " "),
			strings.Join(k.Scopes, ","), expiryText(k.Expires))
		fmt.Fprintln(out, "the key is shown this once; use it as: Authorization: Bearer <key>")
		return exitOK
	})
}

func runAPIKeyList(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("apikey list", "apikey list --config FILE", errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	return withStore(ctx, *path, errOut, func(_ *config.Config, db *store.DB) int {
		keys, err := db.APIKeys(ctx)
		if err != nil {
			fmt.Fprintf(errOut, "restrictedmail apikey list: %v\n", err)
			return exitFailure
		}
		now := time.Now()
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tLISTS\tSCOPES\tCREATED\tEXPIRES\tLAST USED\tSTATE")
		for _, k := range keys {
			expires, used, state := "never", "never", "active"
			if !k.Expires.IsZero() {
				expires = k.Expires.Format(time.RFC3339)
			}
			if !k.LastUsed.IsZero() {
				used = k.LastUsed.Format(time.RFC3339)
			}
			switch {
			case k.Revoked:
				state = "revoked"
			case !k.Expires.IsZero() && !now.Before(k.Expires):
				state = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, strings.Join(k.Lists, ","), strings.Join(k.Scopes, ","),
				k.Created.Format(time.RFC3339), expires, used, state)
		}
		tw.Flush()
		return exitOK
	})
}

func runAPIKeyRevoke(ctx context.Context, args []string, out, errOut io.Writer) int {
	path, ref, exit, ok := oneID("apikey revoke", "apikey revoke --config FILE ID|NAME", "key ID or name (see apikey list)", args, errOut)
	if !ok {
		return exit
	}
	return withStore(ctx, path, errOut, func(_ *config.Config, db *store.DB) int {
		k, err := db.RevokeAPIKey(ctx, ref)
		if err != nil {
			if errors.Is(err, store.ErrNoAPIKey) {
				fmt.Fprintf(errOut, "restrictedmail apikey revoke: no active key with id or name %q (see apikey list)\n", ref)
			} else {
				fmt.Fprintf(errOut, "restrictedmail apikey revoke: %v\n", err)
			}
			return exitFailure
		}
		fmt.Fprintf(out, "revoked %s (%s)\n", k.ID, k.Name)
		return exitOK
	})
}
