package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "dkim.pem", keyPEM(t, "rsa2048-pkcs1"), 0o600)
	writeFile(t, dir, "bad-ca.pem", keyPEM(t, "garbage"), 0o644)
	writeFile(t, dir, "ca.pem", selfSigned(t), 0o644)
	doc := func(ca string) string {
		return minimal + "\n[relay]\naddress = \"relay.example.org:465\"\ntls = \"tls\"\nca_file = \"" + ca + "\"\n"
	}
	path := filepath.Join(dir, "restrictedmail.toml")
	_, ps := Parse([]byte(doc("bad-ca.pem")), path)
	wantError(t, ps, "relay.ca_file", "holds no PEM certificate")
	_, ps = Parse([]byte(doc("missing.pem")), path)
	wantError(t, ps, "relay.ca_file", "cannot read")
	// A private key is PEM, but no certificate.
	writeFile(t, dir, "key-as-ca.pem", keyPEM(t, "ed25519"), 0o600)
	_, ps = Parse([]byte(doc("key-as-ca.pem")), path)
	wantError(t, ps, "relay.ca_file", "holds no PEM certificate")
	cfg, ps := Parse([]byte(doc("ca.pem")), path)
	if len(ps) > 0 || cfg.Relay.CAFile != filepath.Join(dir, "ca.pem") {
		t.Errorf("good CA file: %s", dump(ps))
	}
}

func selfSigned(t *testing.T) []byte {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestDKIMKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind    string
		err     string // "" for none
		warning string
		rsaBits int
	}{
		{kind: "rsa2048-pkcs1", rsaBits: 2048},
		{kind: "rsa2048-pkcs8", rsaBits: 2048},
		{kind: "rsa1024", warning: "RSA key of 1024 bits", rsaBits: 1024},
		{kind: "rsa512", err: "RSA key of 512 bits; DKIM needs at least 1024"},
		{kind: "ed25519"},
		{kind: "garbage", err: "is not a PEM file"},
		{kind: "bad-der", err: "dkim.pem: asn1"},
		{kind: "ec-pkcs8", err: "cannot sign DKIM; use RSA or Ed25519"},
		{kind: "ec-sec1", err: `holds a "EC PRIVATE KEY" block`},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, dir, "dkim.pem", keyPEM(t, tt.kind), 0o600)
			doc := minimal
			path := writeFile(t, dir, "restrictedmail.toml", []byte(doc), 0o644)
			cfg, ps := Load(path)
			line := lineOf(t, doc, "private_key_file")
			switch {
			case tt.err != "":
				if p := wantError(t, ps, "dkim[0].private_key_file", tt.err); p.Line != line {
					t.Errorf("error on line %d, want %d", p.Line, line)
				}
				if cfg != nil {
					t.Error("configuration returned despite the error")
				}
				return
			case tt.warning != "":
				if p := wantWarning(t, ps, "dkim[0].private_key_file", tt.warning); p.Line != line {
					t.Errorf("warning on line %d, want %d", p.Line, line)
				}
				if ps.HasErrors() {
					t.Errorf("errors: %s", dump(ps))
				}
			default:
				if len(ps) > 0 {
					t.Errorf("problems: %s", dump(ps))
				}
			}
			k := cfg.KeyFor("example.org")
			if k == nil || k.Signer == nil {
				t.Fatal("no signer")
			}
			switch s := k.Signer.(type) {
			case *rsa.PrivateKey:
				if s.N.BitLen() != tt.rsaBits {
					t.Errorf("%d-bit key, want %d", s.N.BitLen(), tt.rsaBits)
				}
			case ed25519.PrivateKey:
				if tt.kind != "ed25519" {
					t.Errorf("ed25519 signer for %s", tt.kind)
				}
			default:
				t.Errorf("signer %T", s)
			}
		})
	}
	// A world-readable key is a warning; a missing file an error.
	dir := t.TempDir()
	writeFile(t, dir, "dkim.pem", keyPEM(t, "ed25519"), 0o644)
	_, ps := Parse([]byte(minimal), filepath.Join(dir, "restrictedmail.toml"))
	wantWarning(t, ps, "dkim[0].private_key_file", "readable by every user")
	_, ps = Parse([]byte(strings.Replace(minimal, "dkim.pem", "nope.pem", 1)), filepath.Join(dir, "restrictedmail.toml"))
	wantError(t, ps, "dkim[0].private_key_file", "cannot read")
}

func TestDKIMSections(t *testing.T) {
	t.Parallel()
	doc := minimal + `
[[dkim]]
domain = "EXAMPLE.org"
selector = "rm2"
private_key_file = "dkim.pem"

[[dkim]]
domain = "not a domain"
selector = "bad selector"
private_key_file = ""
`
	_, ps, _ := load(t, doc)
	p := wantError(t, ps, "dkim[1].domain", "example.org has two keys")
	if p.Line != lineOf(t, doc, `"EXAMPLE.org"`) {
		t.Errorf("duplicate domain on line %d", p.Line)
	}
	wantError(t, ps, "dkim[2].domain", "is not a domain")
	wantError(t, ps, "dkim[2].selector", "is not a DKIM selector")
	wantError(t, ps, "dkim[2].private_key_file", "must name the private key")

	// A list whose domain has no key: a warning, not an error.
	doc = strings.Replace(minimal, `address = "board@example.org"`, `address = "board@example.net"`, 1)
	cfg, ps, _ := load(t, doc)
	if cfg == nil || ps.HasErrors() {
		t.Fatalf("list without a key: %s", dump(ps))
	}
	if p := wantWarning(t, ps, "lists[0].address", "no [[dkim]] key for example.net"); p.Line != lineOf(t, doc, "board@example.net") {
		t.Errorf("warning on line %d", p.Line)
	}
}
