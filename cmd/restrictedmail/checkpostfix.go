package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/postfixcheck"
)

func runCheckPostfix(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("check-postfix", `check-postfix [--config FILE] [--postfix-config DIR]

Reads Postfix's configuration (postconf) and maps (postmap, postalias) and
lists, one a line with its fix, what would let mail for a restricted
address past restrictedmail: the milter missing from smtpd_milters, a list
not routed to the LMTP endpoint, another recipient_delimiter, the percent
hack and bang paths on, no explicit milter_default_action,
milter_rcpt_macros without the resolved recipient, and every alias whose
target is a restricted address and that no list declares. Exit 1 when
there is a problem.`, errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	dir := fs.String("postfix-config", "", "Postfix's configuration `directory`, as for postconf -c (default: postfix.config_directory, else Postfix's own)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	cfg := loadConfig(*path, errOut)
	if cfg == nil {
		return exitFailure
	}
	opts := generation.PostfixCheck(cfg)
	if *dir != "" {
		opts.ConfigDir = *dir
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r, err := postfixcheck.Check(ctx, opts)
	if err != nil {
		fmt.Fprintf(errOut, "restrictedmail check-postfix: %v\n", err)
		return exitFailure
	}
	for _, p := range r.Problems {
		fmt.Fprintf(out, "problem: %s\n    fix: %s\n", p.What, p.Fix)
	}
	for _, u := range r.Unchecked {
		fmt.Fprintf(out, "not checked: %s (its entries cannot be listed: check its aliases to restricted addresses by hand)\n", u)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(out, "%d problem(s)\n", len(r.Problems))
		return exitFailure
	}
	fmt.Fprintln(out, "Postfix: OK")
	return exitOK
}

// logPostfixProblems runs check-postfix's checks for serve and logs each
// problem as a warning; serve starts all the same.
func logPostfixProblems(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	if !cfg.Postfix.CheckAtStart {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r, err := postfixcheck.Check(ctx, generation.PostfixCheck(cfg))
	if err != nil {
		log.Info("Postfix's configuration not checked", "reason", err)
		return
	}
	for _, p := range r.Problems {
		log.Warn("Postfix's configuration", "problem", p.What, "fix", p.Fix)
	}
	for _, u := range r.Unchecked {
		log.Info("Postfix's configuration: map not checked for aliases to restricted addresses", "map", u)
	}
}
