package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/apikey"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/daemon"
	"github.com/restrictedmail/restrictedmail/internal/apitest"
	"github.com/restrictedmail/restrictedmail/store"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with serial
// to certFile and its key to keyFile, and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// TestTLSAndRenewedCertificate: with tls_cert_file and tls_key_file the
// API speaks HTTPS only, and a reload (SIGHUP) makes new connections get
// the renewed certificate without a restart.
func TestTLSAndRenewedCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	first := writeCert(t, certFile, keyFile, 1)
	doc := `hostname = "mx.example.org"
[store]
path = "state.db"
[milter]
listen = ""
[lmtp]
listen = "inet:127.0.0.1:0"
[api]
listen = "inet:127.0.0.1:0"
tls_cert_file = "api.crt"
tls_key_file = "api.key"
[[lists]]
address = "board@example.org"
recipients = ["m1@example.net"]
bounce_address = "board-bounces@example.org"
`
	path := filepath.Join(dir, "restrictedmail.toml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, problems := config.Load(path)
	if cfg == nil {
		t.Fatal(problems.Error())
	}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	}()
	db, err := store.Open(context.Background(), cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	key, h := apikey.Generate()
	if err := db.AddAPIKey(context.Background(), store.APIKey{ID: apikey.NewID(), Name: "tls", Hash: h, Lists: []string{"*"},
		Scopes: apikey.AllScopes, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// served trusts exactly want and returns the serial it was shown.
	served := func(want *x509.Certificate) int64 {
		pool := x509.NewCertPool()
		pool.AddCert(want)
		c := apitest.New(t, "https://"+d.APIAddr().String(), key)
		c.HTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		r := c.Do(t, apitest.Request{Method: "GET", Path: "/lists"})
		if r.Status != 200 {
			t.Fatalf("over TLS: %d %s", r.Status, r.Body)
		}
		conn, err := tls.Dial("tcp", d.APIAddr().String(), &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := served(first); got != 1 {
		t.Errorf("serial %d, want 1", got)
	}
	// Plain HTTP is not answered as HTTP.
	if resp, err := http.Get("http://" + d.APIAddr().String() + "/api/v1/lists"); err == nil {
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP: %d, want 400 (Go's answer to HTTP on a TLS port)", resp.StatusCode)
		}
		resp.Body.Close()
	}
	renewed := writeCert(t, certFile, keyFile, 2)
	if err := d.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	if got := served(renewed); got != 2 {
		t.Errorf("serial %d after the reload, want 2 (the renewed certificate)", got)
	}
}

// TestAPIConfiguration: off loopback the API needs allowed_networks and
// TLS; webhooks need an https URL (http only to loopback) and a secret.
func TestAPIConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "hook.secret")
	os.WriteFile(secret, []byte("short\n"), 0o600)
	base := "[[lists]]\naddress = \"board@example.org\"\nrecipients = [\"m@example.net\"]\nbounce_address = \"b@example.org\"\n"
	for _, tt := range []struct{ doc, want string }{
		{"[api]\nlisten = \"inet:192.0.2.1:8027\"\n", "api.listen: inet:192.0.2.1:8027 is reachable from the network"},
		{"[api]\nlisten = \"inet:192.0.2.1:8027\"\nallowed_networks = [\"192.0.2.0/24\"]\n", "api.listen: inet:192.0.2.1:8027 is reachable from the network: API keys and tokens must not cross it in clear text"},
		{"[api]\nlisten = \"inet:127.0.0.1:8027\"\ntls_cert_file = \"x.crt\"\n", "api.tls_key_file: api.tls_cert_file and api.tls_key_file go together"},
		{"[api]\nauth_failure_delay = \"1m\"\n", "api.auth_failure_delay: must be at most 10s"},
		{"[[webhooks]]\nurl = \"http://portal.example.org/hook\"\nsecret_file = \"" + secret + "\"\n", "use https (http only to loopback)"},
		{"[[webhooks]]\nurl = \"https://portal.example.org/hook\"\nsecret_file = \"" + secret + "\"\n", "the secret has 5 bytes"},
		{"[[webhooks]]\nurl = \"https://portal.example.org/hook\"\n", "webhooks[0].secret_file: must name the file"},
		{"[[webhooks]]\nurl = \"https://p.example.org/\"\nsecret_file = \"" + secret + "\"\nevents = [\"delivery.done\"]\n", `"delivery.done" is not one of`},
	} {
		_, problems := config.Parse([]byte(tt.doc+base), filepath.Join(dir, "restrictedmail.toml"))
		if !strings.Contains(problems.Error(), tt.want) {
			t.Errorf("%q: problems %q, want %q", tt.doc, problems.Error(), tt.want)
		}
	}
	os.WriteFile(secret, []byte("whsec_MDEyMzQ1Njc4OWFiY2RlZg==\n"), 0o600)
	cfg, problems := config.Parse([]byte("[api]\nlisten = \"unix:"+filepath.Join(dir, "api.sock")+"\"\n[[webhooks]]\nurl = \"https://p.example.org/\"\nsecret_file = \""+secret+"\"\n"+base),
		filepath.Join(dir, "restrictedmail.toml"))
	if cfg == nil {
		t.Fatal(problems.Error())
	}
	if w := cfg.Webhooks[0]; string(w.Secret) != "0123456789abcdef" || len(w.Events) != 3 || w.Backoff.D() != 5*time.Second {
		t.Errorf("webhook defaults: %+v", w)
	}
}
