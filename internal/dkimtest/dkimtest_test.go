package dkimtest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/restrictedmail/restrictedmail/config"
)

// TestNewKey: the committed keys load as config.LoadKey loads a
// configured key, and a message signed with one verifies against its
// record.
func TestNewKey(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"rsa", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			k := NewKey(t, kind, "example.org", "s1")
			switch s := k.Config.Signer.(type) {
			case *rsa.PrivateKey:
				if kind != "rsa" || s.N.BitLen() != 2048 {
					t.Errorf("%s key is a %d-bit RSA key", kind, s.N.BitLen())
				}
			case ed25519.PrivateKey:
				if kind != "ed25519" {
					t.Errorf("%s key is an Ed25519 key", kind)
				}
			default:
				t.Fatalf("%s key is a %T", kind, s)
			}
			if !strings.Contains(k.TXT, "k="+kind+";") {
				t.Errorf("record %q", k.TXT)
			}
			fi, err := os.Stat(k.Config.PrivateKeyFile)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v, %v", fi, err)
			}
			loaded, warning, err := config.LoadKey(k.Config.PrivateKeyFile)
			if err != nil || warning != "" {
				t.Fatalf("config.LoadKey: %q, %v", warning, err)
			}
			if !k.Config.Signer.(interface{ Equal(crypto.PrivateKey) bool }).Equal(loaded) {
				t.Error("config.LoadKey loads another key than Config.Signer")
			}

			msg := "From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
			var signed bytes.Buffer
			err = dkim.Sign(&signed, strings.NewReader(msg), &dkim.SignOptions{
				Domain: "example.org", Selector: "s1", Signer: k.Config.Signer,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := VerifyGo(t, signed.Bytes(), k); len(got) != 1 || got[0] != "example.org" {
				t.Errorf("VerifyGo = %v, want [example.org]", got)
			}
		})
	}
}
