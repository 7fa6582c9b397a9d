package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

func runToken(ctx context.Context, args []string, out, errOut io.Writer) int {
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "issue":
		return runTokenIssue(ctx, args, out, errOut)
	case "list":
		return runTokenList(ctx, args, out, errOut)
	case "revoke":
		return runTokenRevoke(ctx, args, out, errOut)
	case "help", "-h", "-help", "--help":
		tokenUsage(out)
		return exitOK
	}
	if sub != "" {
		fmt.Fprintf(errOut, "restrictedmail token: unknown subcommand %q\n\n", sub)
	}
	tokenUsage(errOut)
	return exitUsage
}

func tokenUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  restrictedmail token issue  --config FILE --list ADDRESS [--sender ADDRESS] [--ttl 72h]
                              [--uses 1] [--recipient ADDRESS]... [--hide-sender] [--out FILE]
  restrictedmail token list   --config FILE
  restrictedmail token revoke --config FILE ID

issue prints the token alone on the first line of stdout; --out writes the
token file (prefix + token + newline) that the sender attaches. The store
keeps only a hash: the token cannot be shown again.
`)
}

// withStore loads the configuration and opens its store for a command.
func withStore(ctx context.Context, path string, errOut io.Writer, fn func(*config.Config, *store.DB) int) int {
	cfg := loadConfig(path, errOut)
	if cfg == nil {
		return exitFailure
	}
	db, err := store.Open(ctx, cfg.Store.Path)
	if err != nil {
		fmt.Fprintf(errOut, "restrictedmail: %v\n", err)
		return exitFailure
	}
	defer db.Close()
	return fn(cfg, db)
}

func runTokenIssue(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("token issue", "token issue --config FILE --list ADDRESS [flags]", errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	list := fs.String("list", "", "restricted `address` the token is for (required)")
	sender := fs.String("sender", "", "bind the token to this sender `address` (envelope or From)")
	ttl := fs.String("ttl", "", "validity, e.g. 72h or 7d; 0 never expires (default: tokens.default_ttl)")
	uses := fs.Int("uses", 0, "how many messages it allows (default: tokens.default_uses)")
	var rcpts stringList
	fs.Var(&rcpts, "recipient", "recipient `address`, repeatable; replaces the list's recipients")
	hide := fs.Bool("hide-sender", false, "hide the sender's address from the recipients")
	outFile := fs.String("out", "", "write the token file for the sender to attach to `file`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *list == "" {
		return usageErr(fs, "--list is required")
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(errOut, "restrictedmail token issue: "+format+"\n", args...)
		return exitFailure
	}
	req := policy.IssueRequest{List: *list, Sender: *sender, Uses: *uses, Recipients: rcpts, HideSender: *hide}
	if flagSet(fs, "uses") && *uses < 1 {
		return fail("--uses must be at least 1, not %d", *uses)
	}
	if *ttl != "" {
		var d config.Duration
		if err := d.UnmarshalText([]byte(*ttl)); err != nil {
			return fail("--ttl: %v", err)
		}
		v := d.D()
		req.TTL = &v
	}
	return withStore(ctx, *path, errOut, func(cfg *config.Config, db *store.DB) int {
		tok, rec, err := policy.NewToken(generation.Rules(cfg), req, time.Now())
		var ie *policy.IssueError
		if errors.As(err, &ie) {
			return fail("--%s %s", ie.Field, ie.Msg)
		}
		if err != nil {
			return fail("%v", err)
		}
		// Issue atomically: the token file is written aside first, the
		// token stored, then the file put in place. A failure leaves no
		// token without a file and no file without a token.
		var tmp string
		if *outFile != "" {
			if tmp, err = writeTemp(*outFile, token.FileContent(cfg.Tokens.Prefix, tok)); err != nil {
				return fail("writing the token file: %v", err)
			}
			defer os.Remove(tmp)
		}
		if err := db.AddToken(ctx, rec); err != nil {
			return fail("%v", err)
		}
		if tmp != "" {
			if err := os.Rename(tmp, *outFile); err != nil {
				if rerr := db.RevokeToken(ctx, rec.ID); rerr != nil {
					return fail("writing the token file: %v; revoking token %s failed too: %v", err, rec.ID, rerr)
				}
				return fail("writing the token file: %v (token %s revoked)", err, rec.ID)
			}
		}
		fmt.Fprintln(out, tok)
		l := cfg.List(address.MustParse(rec.List))
		fmt.Fprintf(out, "id %s for %s, %s, %d use(s)\n", rec.ID, rec.List, expiryText(rec.Expires), rec.UsesAllowed)
		file := "the token file"
		if *outFile != "" {
			file = *outFile
		}
		fmt.Fprintf(out, "send with %s attached, or the header \"%s: <token>\"", file, cfg.Tokens.Header)
		// recipient_delimiter = "" turns the subaddress carrier off.
		if d := cfg.RecipientDelimiter; d != "" {
			fmt.Fprintf(out, ", or to %s%s<token>@%s", l.Addr.Local, d[:1], l.Addr.Domain)
		}
		fmt.Fprintln(out)
		return exitOK
	})
}

// writeTemp writes content to a new file beside name, readable by its
// owner only, and returns the new file's path.
func writeTemp(name string, content []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return "", err
	}
	_, werr := f.Write(content)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func expiryText(t time.Time) string {
	if t.IsZero() {
		return "never expires"
	}
	return "expires " + t.UTC().Format(time.RFC3339)
}

func runTokenList(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("token list", "token list --config FILE", errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	return withStore(ctx, *path, errOut, func(cfg *config.Config, db *store.DB) int {
		recs, err := db.Tokens(ctx)
		if err != nil {
			fmt.Fprintf(errOut, "restrictedmail token list: %v\n", err)
			return exitFailure
		}
		now := time.Now()
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLIST\tSENDER\tEXPIRES\tUSES LEFT\tSTATE\tRECIPIENTS")
		for _, r := range recs {
			sender, expires, rcpts := r.Sender, "never", "list"
			if sender == "" {
				sender = "any"
			}
			if !r.Expires.IsZero() {
				expires = r.Expires.Format(time.RFC3339)
			}
			if len(r.Recipients) > 0 {
				rcpts = fmt.Sprint(len(r.Recipients))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.ID, r.List, sender, expires, r.UsesLeft(), r.UsesAllowed, state(r, now), rcpts)
		}
		tw.Flush()
		return exitOK
	})
}

func state(r token.Record, now time.Time) string {
	switch {
	case r.Revoked:
		return "revoked"
	case r.Expired(now):
		return "expired"
	case r.UsesLeft() == 0:
		return "used"
	}
	return "active"
}

func runTokenRevoke(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("token revoke", "token revoke --config FILE ID", errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) != 1 {
		return usageErr(fs, "give exactly one token ID (see token list)")
	}
	id := strings.TrimSpace(pos[0])
	return withStore(ctx, *path, errOut, func(cfg *config.Config, db *store.DB) int {
		if err := db.RevokeToken(ctx, id); err != nil {
			if errors.Is(err, token.ErrNotFound) {
				fmt.Fprintf(errOut, "restrictedmail token revoke: no token with id %q (see token list)\n", id)
			} else {
				fmt.Fprintf(errOut, "restrictedmail token revoke: %v\n", err)
			}
			return exitFailure
		}
		fmt.Fprintf(out, "revoked %s\n", id)
		return exitOK
	})
}
