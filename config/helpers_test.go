//go:debug rsa1024min=0

// The directive above lets the tests generate the 512-bit RSA key that
// LoadKey must refuse; Go refuses to make one otherwise.

package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RSA keys are slow to generate: each size is made once per test binary.
var (
	rsaKeys   = map[int]*rsa.PrivateKey{}
	rsaKeysMu sync.Mutex
)

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	rsaKeysMu.Lock()
	defer rsaKeysMu.Unlock()
	if k := rsaKeys[bits]; k != nil {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatalf("generating a %d-bit RSA key: %v", bits, err)
	}
	rsaKeys[bits] = k
	return k
}

// keyPEM returns a private key file of the given kind.
func keyPEM(t testing.TB, kind string) []byte {
	t.Helper()
	block := func(typ string, der []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return block("PRIVATE KEY", der)
	}
	switch kind {
	case "rsa2048-pkcs1":
		return block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey(t, 2048)))
	case "rsa2048-pkcs8":
		return pkcs8(rsaKey(t, 2048))
	case "rsa1024":
		return block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey(t, 1024)))
	case "rsa512":
		return block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey(t, 512)))
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return pkcs8(k)
	case "ec-pkcs8", "ec-sec1":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if kind == "ec-pkcs8" {
			return pkcs8(k)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return block("EC PRIVATE KEY", der)
	case "garbage":
		return []byte("this is not a key\n")
	case "bad-der":
		return block("RSA PRIVATE KEY", []byte("definitely not DER"))
	}
	t.Fatalf("unknown key kind %q", kind)
	return nil
}

// writeFile writes a file into dir with the given mode and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is subject to the umask; set it exactly.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// minimal is a small valid configuration. Its paths are relative, so they
// resolve into the directory the test writes it to, where dkim.pem is.
const minimal = `hostname = "mx.example.org"

[store]
path = "state.db"

[[dkim]]
domain = "example.org"
selector = "rm1"
private_key_file = "dkim.pem"

[[lists]]
address = "board@example.org"
recipients = ["alice@example.net"]
bounce_address = "board-bounces@example.org"
`

// load writes doc to restrictedmail.toml in a new directory that holds an
// RSA-2048 dkim.pem, and loads it.
func load(t testing.TB, doc string) (*Config, Problems, string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "dkim.pem", keyPEM(t, "rsa2048-pkcs1"), 0o600)
	path := writeFile(t, dir, "restrictedmail.toml", []byte(doc), 0o644)
	cfg, ps := Load(path)
	return cfg, ps, dir
}

// mustLoad loads doc and fails on any problem, warnings included.
func mustLoad(t testing.TB, doc string) *Config {
	t.Helper()
	cfg, ps, _ := load(t, doc)
	if len(ps) > 0 || cfg == nil {
		t.Fatalf("problems in a valid configuration:\n%v", ps)
	}
	return cfg
}

// lineOf returns the 1-based line of doc that contains s.
func lineOf(t testing.TB, doc, s string) int {
	t.Helper()
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q is not in the document", s)
	return 0
}

// problem returns the problem of key whose message contains text.
func problem(ps Problems, key, text string) (Problem, bool) {
	for _, p := range ps {
		if p.Key == key && strings.Contains(p.Message, text) {
			return p, true
		}
	}
	return Problem{}, false
}

// wantError checks that ps has an error (not a warning) for key with text.
func wantError(t testing.TB, ps Problems, key, text string) Problem {
	t.Helper()
	p, ok := problem(ps, key, text)
	if !ok || p.Warning {
		t.Errorf("no error %s: %q in:\n%s", key, text, dump(ps))
	}
	return p
}

// wantWarning checks that ps has a warning for key with text.
func wantWarning(t testing.TB, ps Problems, key, text string) Problem {
	t.Helper()
	p, ok := problem(ps, key, text)
	if !ok || !p.Warning {
		t.Errorf("no warning %s: %q in:\n%s", key, text, dump(ps))
	}
	return p
}

func errorCount(ps Problems) int {
	n := 0
	for _, p := range ps {
		if !p.Warning {
			n++
		}
	}
	return n
}

func dump(ps Problems) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}
