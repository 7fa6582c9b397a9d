// Package dkimtest gives tests DKIM keys and two verifiers: go-msgauth and,
// as an independent judge, python3-dkim (dkimpy), both offline against the
// test key's TXT record.
package dkimtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/restrictedmail/restrictedmail/config"
)

// Key is a test signing key with its DNS record.
type Key struct {
	Config config.DKIM // Domain, Selector, PrivateKeyFile (PEM) and Signer
	TXT    string      // the record to publish at selector._domainkey.domain
}

// The keys NewKey hands out, committed under testdata/ so that no test
// spends time generating RSA keys (see testdata/README).
var (
	//go:embed testdata/rsa2048.pem
	rsaPEM []byte
	//go:embed testdata/ed25519.pem
	ed25519PEM []byte
)

// NewKey returns a key of kind "rsa" (2048 bits, PKCS#1) or "ed25519"
// (PKCS#8) for domain and selector, written to a file in t.TempDir(). The
// keys are fixed test keys, not generated: every key of one kind is the
// same key, whatever its domain and selector.
func NewKey(t testing.TB, kind, domain, selector string) Key {
	t.Helper()
	var (
		data []byte
		k    Key
	)
	switch kind {
	case "rsa":
		data = rsaPEM
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "RSA PRIVATE KEY" {
			t.Fatalf("dkimtest: testdata/rsa2048.pem holds no RSA PRIVATE KEY block")
		}
		priv, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			t.Fatalf("dkimtest: testdata/rsa2048.pem: %v", err)
		}
		pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		k.TXT = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
		k.Config.Signer = priv
	case "ed25519":
		data = ed25519PEM
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "PRIVATE KEY" {
			t.Fatalf("dkimtest: testdata/ed25519.pem holds no PRIVATE KEY block")
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatalf("dkimtest: testdata/ed25519.pem: %v", err)
		}
		priv, ok := key.(ed25519.PrivateKey)
		if !ok {
			t.Fatalf("dkimtest: testdata/ed25519.pem holds a %T, not an Ed25519 key", key)
		}
		k.TXT = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
		k.Config.Signer = priv
	default:
		t.Fatalf("dkimtest: unknown key kind %q", kind)
	}
	file := filepath.Join(t.TempDir(), domain+"-"+kind+".pem")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	k.Config.Domain, k.Config.Selector, k.Config.PrivateKeyFile = domain, selector, file
	return k
}

// VerifyGo verifies every DKIM signature of msg with go-msgauth and
// returns the domains whose signature passed.
func VerifyGo(t testing.TB, msg []byte, keys ...Key) []string {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup(keys)})
	if err != nil {
		t.Fatalf("go-msgauth could not verify: %v", err)
	}
	var passed []string
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("go-msgauth: signature of %s fails: %v", v.Domain, v.Err)
			continue
		}
		passed = append(passed, v.Domain)
	}
	return passed
}

func lookup(keys []Key) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		for _, k := range keys {
			if name == k.Config.Selector+"._domainkey."+k.Config.Domain {
				return []string{k.TXT}, nil
			}
		}
		return nil, fmt.Errorf("dkimtest: no record for %s", name)
	}
}

// Python is the interpreter that has dkimpy; the first python3 on PATH may
// be another one (see notes/postfix-e2e.md).
const Python = "/usr/bin/python3"

const verifyScript = `
import sys, dkim
msg = open(sys.argv[1], 'rb').read()
records = {}
for arg in sys.argv[2:]:
    name, _, txt = arg.partition('=')
    records[name.encode() + b'.'] = txt.encode()
def dns(name, timeout=5):
    return records.get(name if name.endswith(b'.') else name + b'.')
ok = dkim.verify(msg, dnsfunc=dns)
print('pass' if ok else 'fail')
sys.exit(0 if ok else 1)
`

// VerifyPython verifies the first DKIM signature of msg with python3-dkim
// and fails the test when it does not pass. A missing dkimpy fails the test
// with the install command.
func VerifyPython(t testing.TB, msg []byte, keys ...Key) {
	t.Helper()
	if out, err := exec.Command(Python, "-c", "import dkim, nacl").CombinedOutput(); err != nil {
		t.Fatalf("python3-dkim is needed as the independent DKIM verifier: apt-get install -y python3-dkim python3-nacl (%v: %s)", err, out)
	}
	file := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(file, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-c", verifyScript, file}
	for _, k := range keys {
		args = append(args, k.Config.Selector+"._domainkey."+k.Config.Domain+"="+k.TXT)
	}
	out, err := exec.Command(Python, args...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "pass" {
		t.Errorf("python3-dkim does not verify the signature: %v: %s", err, out)
	}
}
