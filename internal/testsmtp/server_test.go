package testsmtp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const msg = "Subject: hi\r\n\r\nbody\r\n.leading dot\r\n"

// dial connects a go-smtp client; tlsConf is used for ImplicitTLS and
// STARTTLS servers.
func dial(t *testing.T, s *Server, tlsConf *tls.Config) *smtp.Client {
	t.Helper()
	var c *smtp.Client
	var err error
	switch s.opts.TLS {
	case ImplicitTLS:
		c, err = smtp.DialTLS(s.Addr(), tlsConf)
	case StartTLS:
		c, err = smtp.DialStartTLS(s.Addr(), tlsConf)
	default:
		c, err = smtp.Dial(s.Addr())
	}
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func trustCA(t *testing.T, s *Server) *tls.Config {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM()) {
		t.Fatal("CAPEM holds no certificate")
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

func send(c *smtp.Client, from string, rcpts ...string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	io.WriteString(w, msg)
	return w.Close()
}

func TestCapture(t *testing.T) {
	s := Start(t, Options{})
	c := dial(t, s, nil)
	s.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		if rcpt == "bad@example.net" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
		}
		return nil
	})
	if err := c.Mail("b@example.org", nil); err != nil {
		t.Fatal(err)
	}
	c.Rcpt("a@example.net", nil)
	var se *smtp.SMTPError
	if err := c.Rcpt("bad@example.net", nil); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("RCPT bad: %v, want 550", err)
	}
	c.Rcpt("a@example.net", nil)
	w, _ := c.Data()
	io.WriteString(w, msg)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "b@example.org", "c@example.net"); err != nil {
		t.Fatal(err)
	}
	s.WaitRecipients(t, 3, 5*time.Second)
	m := s.Messages()
	if len(m) != 2 || m[0].From != "b@example.org" || string(m[0].Data) != msg || m[0].Body != smtp.Body8BitMIME ||
		m[0].TLS || m[0].Conn != 1 || m[1].Conn != 1 {
		t.Fatalf("messages: %+v", m)
	}
	if got := strings.Join(s.Recipients(), " "); got != "a@example.net a@example.net c@example.net" {
		t.Fatalf("recipients: %s", got)
	}
}

func TestRefuseResumeSamePort(t *testing.T) {
	s := Start(t, Options{})
	addr := s.Addr()
	c := dial(t, s, nil)
	// go-smtp's client reads the greeting lazily: without it the connection
	// may still wait in the listen queue, which Refuse resets.
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	s.Refuse()
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while refusing: %v, want ECONNREFUSED", err)
	}
	if err := send(c, "b@example.org", "a@example.net"); err != nil {
		t.Fatalf("established connection while refusing: %v", err)
	}
	s.Resume()
	if s.Addr() != addr {
		t.Fatalf("address changed: %s, was %s", s.Addr(), addr)
	}
	if err := send(dial(t, s, nil), "b@example.org", "d@example.net"); err != nil {
		t.Fatal(err)
	}
	if n := s.Connections(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestConnectHook(t *testing.T) {
	s := Start(t, Options{})
	s.SetConnectHook(func(n int) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "busy"}
	})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var se *smtp.SMTPError
	if err := c.Hello("x"); !errors.As(err, &se) || se.Code != 421 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 2}) {
		t.Fatalf("greeting: %v, want 421 4.3.2", err)
	}
}

func TestDropAfter(t *testing.T) {
	s := Start(t, Options{})
	s.DropAfter(1)
	c := dial(t, s, nil)
	if err := send(c, "b@example.org", "1@example.net"); err != nil {
		t.Fatal(err)
	}
	err := send(c, "b@example.org", "2@example.net")
	var se *smtp.SMTPError
	if err == nil || errors.As(err, &se) {
		t.Fatalf("dropped transaction: %v, want a connection error", err)
	}
	if err := send(dial(t, s, nil), "b@example.org", "3@example.net"); err != nil {
		t.Fatalf("after the one-shot drop: %v", err)
	}
	if got := strings.Join(s.Recipients(), " "); got != "1@example.net 3@example.net" {
		t.Fatalf("recipients: %s", got)
	}
}

func TestDelayDataEndsAtClose(t *testing.T) {
	s := Start(t, Options{})
	s.DelayData(time.Hour)
	c := dial(t, s, nil)
	res := make(chan error, 1)
	go func() { res <- send(c, "b@example.org", "a@example.net") }()
	s.Close() // must not wait for the hour
	if err := <-res; err == nil {
		t.Fatal("DATA succeeded on a closed server")
	}
	if len(s.Messages()) != 0 {
		t.Fatal("a message interrupted by Close was recorded")
	}
}

func TestDataHook(t *testing.T) {
	s := Start(t, Options{})
	s.SetDataHook(func(m Message) error {
		if m.Rcpts[0] == "x@example.net" {
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "full"}
		}
		return nil
	})
	c := dial(t, s, nil)
	var se *smtp.SMTPError
	if err := send(c, "b@example.org", "x@example.net"); !errors.As(err, &se) || se.Code != 452 {
		t.Fatalf("DATA: %v, want 452", err)
	}
	if err := send(c, "b@example.org", "y@example.net"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Messages()); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

func TestTLSAndAuth(t *testing.T) {
	for _, mode := range []TLSMode{StartTLS, ImplicitTLS} {
		for _, mech := range []string{sasl.Plain, sasl.Login} {
			s := Start(t, Options{TLS: mode, Username: "u", Password: "p", AuthMechanisms: []string{mech}})
			if pem, err := os.ReadFile(s.CAFile()); err != nil || string(pem) != string(s.CAPEM()) {
				t.Fatalf("CAFile: %v", err)
			}
			c := dial(t, s, trustCA(t, s))
			if err := send(c, "b@example.org", "a@example.net"); err == nil {
				t.Fatal("MAIL without AUTH accepted")
			}
			var a sasl.Client = sasl.NewPlainClient("", "u", "p")
			if mech == sasl.Login {
				a = sasl.NewLoginClient("u", "p")
			}
			if err := c.Auth(a); err != nil {
				t.Fatalf("%v %s: %v", mode, mech, err)
			}
			if err := send(c, "b@example.org", "a@example.net"); err != nil {
				t.Fatal(err)
			}
			if m := s.Messages(); len(m) != 1 || !m[0].TLS || m[0].AuthUser != "u" || s.PlaintextAuth() {
				t.Fatalf("%v %s: %+v", mode, mech, m)
			}
		}
	}
}

func TestPlaintextAuthRecorded(t *testing.T) {
	s := Start(t, Options{Username: "u", Password: "p"})
	c := dial(t, s, nil)
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH advertised without TLS")
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); err == nil {
		t.Fatal("AUTH accepted without TLS")
	}
	if !s.PlaintextAuth() {
		t.Fatal("plaintext AUTH not recorded")
	}
}

func TestWrongPassword(t *testing.T) {
	s := Start(t, Options{TLS: StartTLS, Username: "u", Password: "p"})
	c := dial(t, s, trustCA(t, s))
	var se *smtp.SMTPError
	if err := c.Auth(sasl.NewPlainClient("", "u", "wrong")); !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("AUTH: %v, want 535", err)
	}
}

func TestExtensions(t *testing.T) {
	s := Start(t, Options{No8BitMIME: true})
	c := dial(t, s, nil)
	for ext, want := range map[string]bool{"8BITMIME": false, "SMTPUTF8": false, "PIPELINING": true} {
		if ok, _ := c.Extension(ext); ok != want {
			t.Errorf("%s advertised: %v, want %v", ext, ok, want)
		}
	}
	var se *smtp.SMTPError
	if err := send(c, "b@example.org", "ü@example.net"); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("non-ASCII RCPT without SMTPUTF8: %v, want 550", err)
	}
	if err := send(c, "b@example.org", "a@example.net"); err != nil {
		t.Fatal(err)
	}
	if m := s.Messages(); len(m) != 1 || m[0].Body != "" {
		t.Fatalf("messages: %+v", m)
	}

	u := Start(t, Options{SMTPUTF8: true})
	c = dial(t, u, nil)
	if err := c.SendMail("b@example.org", []string{"ü@example.net"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if m := u.Messages(); len(m) != 1 || !m[0].UTF8 || m[0].Rcpts[0] != "ü@example.net" {
		t.Fatalf("messages: %+v", m)
	}
}
