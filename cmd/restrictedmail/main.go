// Command restrictedmail guards restricted mail addresses for Postfix: a
// milter that rejects mail without a valid posting token at SMTP time, and
// an LMTP endpoint that spends the token and redistributes the message.
// This file only dispatches; the work is in the packages beside cmd/.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes: 0 success, 1 failure, 2 bad usage (as flag and sysexits do).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, out, errOut io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the milter, the LMTP endpoint and the metrics endpoint", runServe},
		{"check-config", "check the configuration and list every problem", runCheckConfig},
		{"check-postfix", "check Postfix's configuration against restrictedmail's", runCheckPostfix},
		{"token", "issue, list, revoke and import posting tokens (token help)", runToken},
		{"delivery", "what happened to every copy: list and show deliveries (delivery help)", runDelivery},
		{"recipients", "recipients that keep bouncing (recipients help)", runRecipients},
		{"apikey", "create, list and revoke keys of the HTTP API (apikey help)", runAPIKey},
		{"store", "copy the SQLite store into PostgreSQL, for several hosts (store help)", runStore},
		{"test", "dry run: what the milter and the LMTP endpoint would do with a message", runTest},
		{"dkim", "generate DKIM keys and check their DNS records (dkim help)", runDKIM},
		{"demo", "show the main job end to end, on the embedded defaults", runDemo},
		{"version", "print the version", runVersion},
		{"completion", "print the bash completion script (completion bash)", runCompletion},
		{"help", "show this help", nil},
	}
}

func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	if len(args) == 0 {
		usage(errOut)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(out)
		return exitOK
	case "-version", "--version":
		name = "version"
	case "man": // hidden: writes the man pages at build time (man.go)
		return runMan(ctx, args[1:], out, errOut)
	}
	for _, c := range commands() {
		if c.name == name && c.run != nil {
			return c.run(ctx, args[1:], out, errOut)
		}
	}
	fmt.Fprintf(errOut, "restrictedmail: unknown command %q\n\n", name)
	usage(errOut)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `restrictedmail guards restricted mail addresses for Postfix.

Usage:
  restrictedmail COMMAND [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Every command that reads the configuration takes --config FILE
(default %s). Flags take one or two dashes.
Run "restrictedmail COMMAND --help" for the flags of a command.
`, defaultConfig)
}
