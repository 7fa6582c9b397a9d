package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/dryrun"
	"github.com/restrictedmail/restrictedmail/internal/generation"
)

// runTest is the dry run: it prints what the milter and the LMTP endpoint
// would do with a message, with the copy that would be sent.
func runTest(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("test", `test --config FILE --from ADDRESS --to ADDRESS [--to ADDRESS]... MESSAGE.eml

Dry run: prints the milter's verdict (the real milter code, run in this
process), the LMTP endpoint's verdict for each restricted address, the
recipients, and the rewritten, DKIM-signed copy that would be sent —
without spending a token, recording or sending anything (the store is
opened read-only). MESSAGE.eml is the message as Postfix would receive it
("-" reads standard input); bare LF line endings are taken as CRLF.
Exit status: 0 when the message would be accepted and redistributed, 1
when it would be refused (or on an error), 2 for bad usage.`, errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	from := fs.String("from", "", "envelope sender `address` (MAIL FROM); \"\" is the null sender")
	var to stringList
	fs.Var(&to, "to", "recipient `address` (RCPT TO), repeatable")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	switch {
	case len(to) == 0:
		return usageErr(fs, "--to is required")
	case len(pos) != 1:
		return usageErr(fs, "give exactly one message file (or - for standard input)")
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(errOut, "restrictedmail test: "+format+"\n", args...)
		return exitFailure
	}
	cfg := loadConfig(*path, errOut)
	if cfg == nil {
		return exitFailure
	}
	msg, err := readMessage(pos[0], cfg)
	if err != nil {
		return fail("%v", err)
	}
	db, err := generation.OpenStoreReadOnly(ctx, cfg.Store)
	if err != nil {
		return fail("%v", err)
	}
	defer db.Close()
	rep, err := dryrun.Run(ctx, cfg, db, *from, to, msg, time.Now())
	if err != nil {
		return fail("%v", err)
	}
	if err := rep.Write(out); err != nil {
		return fail("%v", err)
	}
	if !rep.Pass() {
		return exitFailure
	}
	return exitOK
}

// readMessage reads the message file ("-": standard input), refusing one
// far beyond what the LMTP endpoint would take.
func readMessage(name string, cfg *config.Config) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	// One byte over the limit is enough to report the 552.
	msg, err := io.ReadAll(io.LimitReader(r, cfg.LMTP.MaxMessageSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return msg, nil
}
