package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

func runToken(ctx context.Context, args []string, out, errOut io.Writer) int {
	return subcommand("token", args, out, errOut, tokenUsage, map[string]func([]string) int{
		"issue":  func(a []string) int { return runTokenIssue(ctx, a, out, errOut) },
		"list":   func(a []string) int { return runTokenList(ctx, a, out, errOut) },
		"revoke": func(a []string) int { return runTokenRevoke(ctx, a, out, errOut) },
		"import": func(a []string) int { return runTokenImport(ctx, a, out, errOut) }, // tokenimport.go
	})
}

func tokenUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  restrictedmail token issue  --config FILE --list ADDRESS [--sender ADDRESS] [--ttl 72h]
                              [--uses 1] [--recipient ADDRESS]... [--hide-sender] [--out FILE]
                              [--report none|summary|failures]
  restrictedmail token list   --config FILE
  restrictedmail token revoke --config FILE ID
  restrictedmail token import --config FILE --format lego [--list ADDRESS] [--ttl 0] FILE.csv

issue prints the token alone on the first line of stdout; --out writes the
token file (prefix + token + newline) that the sender attaches. The store
keeps only a hash: the token cannot be shown again. issue also takes
--owner and --external-ref, recorded for portals (the HTTP API).
import stores the unspent tokens of a LEGO export (hashed), so that the
token files LEGO handed out keep working.
`)
}

// withStore loads the configuration and opens its store for a command.
func withStore(ctx context.Context, path string, errOut io.Writer, fn func(*config.Config, *store.DB) int) int {
	cfg := loadConfig(path, errOut)
	if cfg == nil {
		return exitFailure
	}
	db, err := generation.OpenStore(ctx, cfg.Store)
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
	owner := fs.String("owner", "", "record who the token is for (`text`, opaque; the API's owner)")
	extRef := fs.String("external-ref", "", "record a reference of your own (`text`, opaque; the API's external_ref)")
	report := fs.String("report", "", "report to the sender after the fan-out: `mode` none, summary or failures (default: the list's report)")
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
	req := tokenops.IssueRequest{List: *list, Sender: *sender, Uses: *uses, Recipients: rcpts, HideSender: *hide,
		Owner: *owner, ExternalRef: *extRef, Report: *report}
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
		ops := tokenops.New(db, generation.TokenSettingsOf(cfg))
		// The token file is written aside first (an unwritable --out
		// issues nothing), the token stored, then the file put in place.
		// A failure leaves no token without a file and no file without a
		// token.
		var tmp string
		if *outFile != "" {
			var err error
			if tmp, err = writeTemp(*outFile, nil); err != nil {
				return fail("writing the token file: %v", err)
			}
			defer os.Remove(tmp)
		}
		iss, err := ops.Issue(ctx, req)
		if msg := issueRefusal(cfg, req.List, err); msg != "" {
			return fail("%s", msg)
		}
		tok, rec := iss.Token, iss.Record
		if tmp != "" {
			err := os.WriteFile(tmp, iss.File, 0o600)
			if err == nil {
				err = os.Rename(tmp, *outFile)
			}
			if err != nil {
				if _, rerr := ops.Revoke(ctx, rec.ID); rerr != nil {
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

// issueRefusal words a refusal of tokenops for the command line ("" for
// none), naming the flag at fault.
func issueRefusal(cfg *config.Config, list string, err error) string {
	var fe *tokenops.FieldError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &fe):
		flag := fe.Field
		switch flag {
		case "recipients":
			flag = "recipient"
		case "external_ref":
			flag = "external-ref"
		}
		return fmt.Sprintf("--%s %s", flag, fe.Msg)
	case errors.Is(err, tokenops.ErrUnknownList):
		if _, perr := address.Parse(list); perr != nil {
			return fmt.Sprintf("--list %q: %v", list, perr)
		}
		return fmt.Sprintf("--list %s is not a restricted address in %s", list, cfg.File)
	}
	return err.Error()
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
		ops := tokenops.New(db, generation.TokenSettingsOf(cfg))
		recs, err := ops.All(ctx)
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.ID, r.List, sender, expires, r.UsesLeft(), r.UsesAllowed, store.StateOf(r, now), rcpts)
		}
		tw.Flush()
		return exitOK
	})
}

func runTokenRevoke(ctx context.Context, args []string, out, errOut io.Writer) int {
	path, id, exit, ok := oneID("token revoke", "token revoke --config FILE ID", "token ID (see token list)", args, errOut)
	if !ok {
		return exit
	}
	return withStore(ctx, path, errOut, func(cfg *config.Config, db *store.DB) int {
		if _, err := tokenops.New(db, generation.TokenSettingsOf(cfg)).Revoke(ctx, id); err != nil {
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
