// Package dkimkey generates DKIM signing keys with the DNS records that
// publish them (RFC 6376 §3.6.1, RFC 8463 for Ed25519), and checks the
// records published in DNS against the configured keys: the tooling behind
// `restrictedmail dkim keygen` and `restrictedmail dkim check`.
package dkimkey

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Key types.
const (
	RSA     = "rsa"
	Ed25519 = "ed25519"
)

// MinRSABits is the smallest RSA key Generate makes: RFC 8301 forbids
// shorter ones, and 2048 is the usual minimum.
const MinRSABits = 2048

// Generate makes a new private key: RSA of bits bits, or Ed25519 (bits is
// ignored).
func Generate(kind string, bits int) (crypto.Signer, error) {
	switch kind {
	case RSA:
		if bits < MinRSABits || bits > 8192 {
			return nil, fmt.Errorf("an RSA key for DKIM has %d to 8192 bits, not %d", MinRSABits, bits)
		}
		return rsa.GenerateKey(rand.Reader, bits)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("key type %q is neither %q nor %q", kind, RSA, Ed25519)
}

// EncodePEM encodes a private key as PKCS#8 PEM ("PRIVATE KEY"), which
// config.LoadKey reads and OpenSSL and OpenDKIM understand.
func EncodePEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteKeyFile writes a private key to path with mode 0600. It refuses to
// replace an existing file unless force is set; with force the new key is
// written beside it and renamed over it, so that the old key is never half
// overwritten.
func WriteKeyFile(path string, pemData []byte, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists; not overwriting a key (use --force to replace it)", path)
		}
		if err != nil {
			return err
		}
		_, werr := f.Write(pemData)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			os.Remove(path)
			return fmt.Errorf("writing %s: %w", path, err)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := f.Write(pemData)
	// CreateTemp makes the file 0600 already; Chmod says so explicitly.
	if err := errors.Join(werr, f.Chmod(0o600), f.Sync(), f.Close()); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// Name is the DNS name of a key's record: selector._domainkey.domain.
func Name(selector, domain string) string {
	return selector + "._domainkey." + strings.TrimSuffix(domain, ".")
}

// Record returns the TXT record value that publishes pub:
// "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or, for Ed25519,
// "v=DKIM1; k=ed25519; p=<base64 of the 32-byte key>" (RFC 8463 §4).
func Record(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("a %T key cannot sign DKIM", pub)
}

// ZoneEntry writes the record as a zone file line: a TXT record's strings
// hold at most 255 bytes each (RFC 1035 §3.3.14), and an RSA-2048 record
// is longer, so it is split into several strings, which resolvers join.
func ZoneEntry(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	return name + ". IN TXT ( " + strings.Join(parts, " ") + " )"
}
