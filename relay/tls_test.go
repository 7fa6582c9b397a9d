package relay

import (
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

const (
	user     = "relay@example.org"
	password = "correct horse"
)

func tlsConfig(srv *testsmtp.Server, mode string) Options {
	cfg := relayConfig(srv)
	cfg.TLS, cfg.CAFile, cfg.Username, cfg.Password = mode, srv.CAFile(), user, password
	return cfg
}

func TestTLSAndAuth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  testsmtp.TLSMode
		tls   string
		mechs []string
		host  string
	}{
		{"starttls plain", testsmtp.StartTLS, "starttls", nil, "127.0.0.1"},
		{"starttls login only", testsmtp.StartTLS, "starttls", []string{sasl.Login}, "127.0.0.1"},
		{"starttls by name", testsmtp.StartTLS, "starttls", nil, "localhost"},
		{"implicit tls", testsmtp.ImplicitTLS, "tls", nil, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testsmtp.Start(t, testsmtp.Options{TLS: tc.mode, Username: user, Password: password, AuthMechanisms: tc.mechs})
			cfg := tlsConfig(srv, tc.tls)
			cfg.Address = strings.Replace(cfg.Address, "127.0.0.1", tc.host, 1)
			rcpts := addresses(120, "r%d@example.net")
			res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
			for _, r := range rcpts {
				wantErr(t, res, r, "", false, 0)
			}
			for _, m := range srv.Messages() {
				if !m.TLS || m.AuthUser != user || string(m.Data) != message {
					t.Fatalf("server got TLS %v, AUTH %q", m.TLS, m.AuthUser)
				}
			}
			if srv.PlaintextAuth() {
				t.Fatal("credentials offered without TLS")
			}
		})
	}
}

// failsAt sends to srv with cfg and expects every recipient to fail
// temporarily at stage, with no message and no credentials in clear.
func failsAt(t *testing.T, srv *testsmtp.Server, cfg Options, stage string, code int) {
	t.Helper()
	rcpts := addresses(100, "r%d@example.net")
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for _, r := range rcpts {
		wantErr(t, res, r, stage, true, code)
	}
	if len(srv.Messages()) != 0 || srv.PlaintextAuth() {
		t.Fatalf("%d messages, plaintext AUTH %v", len(srv.Messages()), srv.PlaintextAuth())
	}
	// The breaker: one attempt, not one per transaction or worker.
	if n := srv.Connections(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestStartTLSNotOffered(t *testing.T) {
	// The relay offers AUTH in clear: a client that went on without TLS
	// would send the password.
	srv := testsmtp.Start(t, testsmtp.Options{Username: user, Password: password, AuthInClear: true})
	cfg := tlsConfig(srv, "starttls")
	cfg.CAFile = ""
	failsAt(t, srv, cfg, StageTLS, 0)
}

func TestWrongCA(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{TLS: testsmtp.StartTLS, Username: user, Password: password})
	other := testsmtp.Start(t, testsmtp.Options{TLS: testsmtp.StartTLS})
	cfg := tlsConfig(srv, "starttls")
	cfg.CAFile = other.CAFile()
	failsAt(t, srv, cfg, StageTLS, 0)

	implicit := testsmtp.Start(t, testsmtp.Options{TLS: testsmtp.ImplicitTLS, Username: user, Password: password})
	cfg = tlsConfig(implicit, "tls")
	cfg.CAFile = "" // system roots do not know the test CA
	failsAt(t, implicit, cfg, StageTLS, 0)
}

func TestWrongPassword(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{TLS: testsmtp.StartTLS, Username: user, Password: password})
	cfg := tlsConfig(srv, "starttls")
	cfg.Password = "wrong"
	failsAt(t, srv, cfg, StageAuth, 535)
}

func TestNoCredentialsInClear(t *testing.T) {
	// config.Load refuses tls = "none" with a username; the client refuses
	// it again rather than trust that.
	srv := testsmtp.Start(t, testsmtp.Options{Username: user, Password: password, AuthInClear: true})
	cfg := tlsConfig(srv, "none")
	failsAt(t, srv, cfg, StageAuth, 0)
}

func TestNewErrors(t *testing.T) {
	for name, cfg := range map[string]Options{
		"no port":      {Address: "relay.example.org", TLS: "none"},
		"bad tls mode": {Address: "relay.example.org:25", TLS: "ssl"},
		"missing CA":   {Address: "relay.example.org:25", TLS: "tls", CAFile: "/nonexistent/ca.pem"},
		"CA not PEM":   {Address: "relay.example.org:25", TLS: "tls", CAFile: "tls_test.go"},
	} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
