package dkimkey

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/restrictedmail/restrictedmail/rewrite"
)

// LookupTXT looks the TXT records of a name up; net.Resolver's LookupTXT
// is one, and tests pass their own.
type LookupTXT func(ctx context.Context, name string) ([]string, error)

// Status is the outcome of checking one key.
type Status int

// Statuses: only OK passes.
const (
	OK       Status = iota
	Mismatch        // a DKIM record is published, but not for this key
	Missing         // no DKIM record at the name
	Failed          // the lookup failed (a DNS error other than "no such name")
)

func (s Status) String() string {
	return [...]string{"OK", "MISMATCH", "MISSING", "LOOKUP FAILED"}[s]
}

// Result is the check of one configured key.
type Result struct {
	Domain, Selector, Name string
	Status                 Status
	Detail                 string // what matched or what is wrong
}

// Check looks the record of key up and compares it with the key's public
// half. The record is parsed as verifiers do (RFC 6376 §3.6.1): tag=value
// pairs separated by ";", k= defaulting to rsa, p= in base64 (for RSA a
// SubjectPublicKeyInfo, or the bare RSAPublicKey that some tools publish).
func Check(ctx context.Context, lookup LookupTXT, key rewrite.Key) Result {
	res := Result{Domain: key.Domain, Selector: key.Selector, Name: Name(key.Selector, key.Domain)}
	if key.Signer == nil {
		res.Status, res.Detail = Failed, "the configured key is not loaded"
		return res
	}
	txts, err := lookup(ctx, res.Name)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		res.Status, res.Detail = Missing, "no TXT record at "+res.Name+"; publish the record `dkim keygen` printed"
		return res
	case err != nil:
		res.Status, res.Detail = Failed, err.Error()
		return res
	}
	var mismatches []string
	records := 0
	for _, txt := range txts {
		tags, err := parseRecord(txt)
		if err != nil {
			continue // another kind of TXT record at the name
		}
		records++
		detail, ok := matches(tags, key.Signer.Public())
		if !ok {
			mismatches = append(mismatches, detail)
			continue
		}
		res.Status, res.Detail = OK, detail
		if len(txts) > 1 {
			res.Detail += fmt.Sprintf(" (%d TXT records at the name; verifiers may pick any)", len(txts))
		}
		return res
	}
	if records == 0 {
		res.Status, res.Detail = Missing, fmt.Sprintf("%d TXT record(s) at %s, none of them a DKIM key record", len(txts), res.Name)
		return res
	}
	res.Status, res.Detail = Mismatch, strings.Join(mismatches, "; ")
	return res
}

// parseRecord splits a DKIM key record into its tags. A record with a v=
// tag must start with v=DKIM1; every DKIM key record has p=.
func parseRecord(txt string) (map[string]string, error) {
	tags := map[string]string{}
	for i, part := range strings.Split(txt, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("tag %q has no value", part)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "v" && (i != 0 || v != "DKIM1") {
			return nil, errors.New("not a DKIM1 record")
		}
		tags[k] = v
	}
	if _, ok := tags["p"]; !ok {
		return nil, errors.New("no p= tag")
	}
	return tags, nil
}

// matches compares a parsed record with pub; the string says why.
func matches(tags map[string]string, pub crypto.PublicKey) (string, bool) {
	kind := tags["k"]
	if kind == "" {
		kind = RSA
	}
	p := strings.Join(strings.Fields(tags["p"]), "")
	if p == "" {
		return "the record has an empty p=: the key is revoked", false
	}
	if h, ok := tags["h"]; ok && !hasItem(h, "sha256") {
		return "the record allows only the hash algorithms " + h + "; restrictedmail signs with sha256", false
	}
	if s, ok := tags["s"]; ok && !hasItem(s, "email") && !hasItem(s, "*") {
		return "the record's s=" + s + " does not allow email", false
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return "p= is not base64", false
	}
	var published crypto.PublicKey
	switch kind {
	case RSA:
		if k, err := x509.ParsePKIXPublicKey(der); err == nil {
			published = k
		} else if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
			published = k
		} else {
			return "p= is no RSA public key", false
		}
	case Ed25519:
		if len(der) != ed25519.PublicKeySize {
			return "p= is no Ed25519 public key", false
		}
		published = ed25519.PublicKey(der)
	default:
		return "unknown key type k=" + kind, false
	}
	eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(published) {
		return fmt.Sprintf("the published %s key is not the configured %s key", kind, describe(pub)), false
	}
	detail := "the published " + describe(pub) + " key matches"
	if t, ok := tags["t"]; ok && hasItem(t, "y") {
		detail += " (t=y: the domain is testing DKIM; verifiers may ignore failures)"
	}
	return detail, true
}

func hasItem(list, item string) bool {
	for _, x := range strings.Split(list, ":") {
		if strings.EqualFold(strings.TrimSpace(x), item) {
			return true
		}
	}
	return false
}

func describe(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	case ed25519.PublicKey:
		return Ed25519
	}
	return fmt.Sprintf("%T", pub)
}
