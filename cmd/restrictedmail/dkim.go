package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/dkimkey"
	"github.com/restrictedmail/restrictedmail/rewrite"
)

func runDKIM(ctx context.Context, args []string, out, errOut io.Writer) int {
	return dkimCommand(ctx, args, out, errOut, net.DefaultResolver.LookupTXT)
}

// dkimCommand dispatches the dkim subcommands; lookup is the DNS lookup of
// `dkim check`, which tests replace.
func dkimCommand(ctx context.Context, args []string, out, errOut io.Writer, lookup dkimkey.LookupTXT) int {
	return subcommand("dkim", args, out, errOut, dkimUsage, map[string]func([]string) int{
		"keygen": func(a []string) int { return runDKIMKeygen(a, out, errOut) },
		"check":  func(a []string) int { return runDKIMCheck(ctx, a, out, errOut, lookup) },
	})
}

func dkimUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  restrictedmail dkim keygen --domain DOMAIN --selector SELECTOR --out FILE
                             [--type rsa|ed25519] [--bits 2048] [--force]
  restrictedmail dkim check  --config FILE [--timeout 10s]

keygen writes a new private key (mode 0600) and prints the DNS TXT record
to publish and the [[dkim]] entry for restrictedmail.toml. check looks up
the record of every [[dkim]] key and says whether it matches the key; it
exits 1 when a record is missing or does not match.
Run "restrictedmail dkim keygen --help" for the flags of each.
`)
}

func runDKIMKeygen(args []string, out, errOut io.Writer) int {
	fs := newFlags("dkim keygen", `dkim keygen --domain DOMAIN --selector SELECTOR --out FILE [flags]

Generates a DKIM signing key, writes it to FILE (PKCS#8 PEM, mode 0600;
an existing file is kept unless --force) and prints the DNS TXT record
that publishes it. Rotate keys with a new selector: publish the new
record, wait for the DNS TTL, switch [[dkim]] to the new selector and
key, reload, and remove the old record a few days later.`, errOut)
	domain := fs.String("domain", "", "signing `domain` (the list addresses' domain)")
	selector := fs.String("selector", "", "DNS `selector`, e.g. rm2 (the record is SELECTOR._domainkey.DOMAIN)")
	outFile := fs.String("out", "", "write the private key to `file`")
	kind := fs.String("type", dkimkey.RSA, "key `type`: rsa or ed25519 (many receivers still verify only rsa)")
	bits := fs.Int("bits", 2048, "RSA key size in `bits`")
	force := fs.Bool("force", false, "replace an existing key file")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected argument %q", pos[0])
	case *domain == "" || *selector == "" || *outFile == "":
		return usageErr(fs, "--domain, --selector and --out are required")
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(errOut, "restrictedmail dkim keygen: "+format+"\n", args...)
		return exitFailure
	}
	// The same rules as the [[dkim]] keys of the configuration.
	if _, err := address.Domain(*domain); err != nil {
		return usageErr(fs, "--domain %q is not a domain", *domain)
	}
	if _, err := address.Domain(*selector); err != nil {
		return usageErr(fs, "--selector %q is not a DKIM selector (letters, digits, '-', dots)", *selector)
	}
	key, err := dkimkey.Generate(*kind, *bits)
	if err != nil {
		return fail("%v", err)
	}
	pemData, err := dkimkey.EncodePEM(key)
	if err != nil {
		return fail("%v", err)
	}
	record, err := dkimkey.Record(key.Public())
	if err != nil {
		return fail("%v", err)
	}
	if err := dkimkey.WriteKeyFile(*outFile, pemData, *force); err != nil {
		return fail("%v", err)
	}
	abs, err := filepath.Abs(*outFile)
	if err != nil {
		abs = *outFile
	}
	name := dkimkey.Name(*selector, *domain)
	fmt.Fprintf(out, `wrote the private key to %s (mode 0600)

Publish this DNS TXT record:
name:  %s
value: %s

As a zone file line:
%s

Then let the daemon read the key (chgrp restrictedmail %s && chmod 0640 %s)
and add it to restrictedmail.toml:
[[dkim]]
domain = %q
selector = %q
private_key_file = %q

Check the published record with: restrictedmail dkim check --config FILE
`, abs, name, record, dkimkey.ZoneEntry(name, record), abs, abs, *domain, *selector, abs)
	return exitOK
}

func runDKIMCheck(ctx context.Context, args []string, out, errOut io.Writer, lookup dkimkey.LookupTXT) int {
	fs := newFlags("dkim check", `dkim check --config FILE [--timeout 10s]

Looks up SELECTOR._domainkey.DOMAIN for every [[dkim]] key of the
configuration and says per domain whether the published record matches
the configured private key. Exits 1 when any record is missing, does not
match, or cannot be looked up.`, errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each DNS lookup")
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
	if len(cfg.DKIM) == 0 {
		fmt.Fprintf(out, "%s: no [[dkim]] keys configured; the copies go out unsigned\n", *path)
		return exitFailure
	}
	code := exitOK
	for _, k := range cfg.DKIM {
		lctx, cancel := context.WithTimeout(ctx, *timeout)
		res := dkimkey.Check(lctx, lookup, rewrite.Key{Domain: k.Domain, Selector: k.Selector, Signer: k.Signer})
		cancel()
		fmt.Fprintf(out, "%s: %s: %s: %s\n", res.Domain, res.Name, res.Status, res.Detail)
		if res.Status != dkimkey.OK {
			code = exitFailure
		}
	}
	return code
}
