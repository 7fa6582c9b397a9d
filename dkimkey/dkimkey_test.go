package dkimkey

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/restrictedmail/restrictedmail/rewrite"
)

// rsaKey is the one RSA key this test binary generates, of the smallest
// size Generate makes: generating RSA keys is slow (seconds for 4096 bits
// under -race), and every test that needs a key shares this one.
var rsaKey = sync.OnceValues(func() (crypto.Signer, error) {
	return Generate(RSA, MinRSABits)
})

func TestGenerate(t *testing.T) {
	t.Parallel()
	key, err := rsaKey()
	if err != nil {
		t.Fatalf("Generate(RSA, %d): %v", MinRSABits, err)
	}
	if k, ok := key.(*rsa.PrivateKey); !ok || k.N.BitLen() != MinRSABits {
		t.Errorf("Generate(RSA, %d) = %T, want a %d-bit *rsa.PrivateKey", MinRSABits, key, MinRSABits)
	}
	ed, err := Generate(Ed25519, 0)
	if err != nil {
		t.Fatalf("Generate(Ed25519): %v", err)
	}
	if _, ok := ed.(ed25519.PrivateKey); !ok {
		t.Errorf("Generate(Ed25519) = %T, want ed25519.PrivateKey", ed)
	}
	// Refused sizes fail before any key is generated, so they cost nothing.
	// Sizes in range (4096 included) take the same path as MinRSABits.
	for _, bits := range []int{0, 1024, MinRSABits - 1, 8193} {
		if k, err := Generate(RSA, bits); err == nil || !strings.Contains(err.Error(), "2048 to 8192") {
			t.Errorf("Generate(RSA, %d) = %T, %v; want the allowed range", bits, k, err)
		}
	}
	if k, err := Generate("dsa", 2048); err == nil {
		t.Errorf("Generate(dsa) = %T, want an error", k)
	}
}

func TestZoneEntrySplitsLongRecords(t *testing.T) {
	t.Parallel()
	key, err := rsaKey()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := Record(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	// An RSA-2048 record needs two strings; the longer value needs four,
	// as an RSA-4096 record would need three.
	long := "v=DKIM1; k=rsa; p=" + strings.Repeat("ABCD", 200)
	for _, c := range []struct {
		rec   string
		parts int
	}{{rec, 2}, {long, 4}} {
		line := ZoneEntry("s1._domainkey.example.org", c.rec)
		if !strings.HasPrefix(line, "s1._domainkey.example.org. IN TXT ( \"v=DKIM1; k=rsa; p=") || !strings.HasSuffix(line, "\" )") {
			t.Fatalf("zone line %q", line)
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(line, "s1._domainkey.example.org. IN TXT ( "), " )")
		parts := strings.Split(inner, "\" \"")
		var joined strings.Builder
		for _, part := range parts {
			part = strings.Trim(part, "\"")
			if len(part) > 255 {
				t.Errorf("a TXT string of %d bytes; at most 255", len(part))
			}
			joined.WriteString(part)
		}
		if len(parts) != c.parts {
			t.Errorf("a %d-byte record in %d strings, want %d", len(c.rec), len(parts), c.parts)
		}
		if joined.String() != c.rec {
			t.Errorf("the strings do not join back to the record")
		}
	}
}

// TestCheckRecordForms: what verifiers accept is accepted, and what would
// make them fail is a mismatch with the reason.
func TestCheckRecordForms(t *testing.T) {
	t.Parallel()
	key, err := rsaKey()
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(key.Public().(*rsa.PublicKey)))
	rec, _ := Record(key.Public())
	p := rec[strings.Index(rec, "p=")+2:]
	cfg := rewrite.Key{Domain: "example.org", Selector: "s1", Signer: key}
	for _, c := range []struct {
		txt    string
		status Status
		detail string
	}{
		{rec, OK, "rsa-2048 key matches"},
		{"p=" + pkcs1, OK, "matches"}, // k= defaults to rsa; PKCS#1 as some tools publish
		{"v=DKIM1; k=rsa; t=y; p=" + p[:100] + " " + p[100:], OK, "t=y"},
		{"v=DKIM1; h=sha1; p=" + p, Mismatch, "sha256"},
		{"v=DKIM1; s=tlsrpt; p=" + p, Mismatch, "does not allow email"},
		{"v=DKIM1; k=ed25519; p=" + p, Mismatch, "no Ed25519 public key"},
		{"v=DKIM1; p=", Mismatch, "revoked"},
		{"k=rsa; v=DKIM1; p=" + p, Missing, "none of them a DKIM key record"},
		{"v=spf1 -all", Missing, "none of them"},
	} {
		res := Check(context.Background(), func(context.Context, string) ([]string, error) { return []string{c.txt}, nil }, cfg)
		if res.Status != c.status || !strings.Contains(res.Detail, c.detail) || res.Name != "s1._domainkey.example.org" {
			t.Errorf("record %.40q: %v %q, want %v %q", c.txt, res.Status, res.Detail, c.status, c.detail)
		}
	}
	res := Check(context.Background(), func(context.Context, string) ([]string, error) { return nil, errors.New("i/o timeout") }, cfg)
	if res.Status != Failed || !strings.Contains(res.Detail, "timeout") {
		t.Errorf("failing lookup: %v %q", res.Status, res.Detail)
	}
}

func TestWriteKeyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "k.pem")
	if err := WriteKeyFile(path, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, []byte("two"), false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second write without force: %v", err)
	}
	if err := WriteKeyFile(path, []byte("three"), true); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(data) != "three" || fi.Mode().Perm() != 0o600 {
		t.Errorf("after force: %q mode %v", data, fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}
