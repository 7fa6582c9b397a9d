// Package testsmtp is a capture SMTP server for tests: a real go-smtp server
// on 127.0.0.1 that records every completed transaction and can be told to
// misbehave while it runs (refuse connections, reject commands, drop or
// stall connections). The relay client and the LMTP endpoint are tested
// against it over real TCP and real TLS, so that what the tests prove is
// what happens on the wire.
//
// Every method is safe for concurrent use. Hooks run on the server's
// connection goroutines, possibly concurrently; they must not call t.Fatal.
package testsmtp

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TLSMode selects how the server offers TLS.
type TLSMode int

const (
	NoTLS       TLSMode = iota // plain text only
	StartTLS                   // plain text, STARTTLS advertised
	ImplicitTLS                // TLS from the first byte ("port 465")
)

// Options configures a Server. The zero value is a plain-text server that
// accepts everything and advertises 8BITMIME but not SMTPUTF8.
type Options struct {
	TLS TLSMode
	// Username, when set, makes AUTH mandatory before MAIL. AUTH (PLAIN and
	// LOGIN, or AuthMechanisms) is advertised only over TLS, as relays do.
	Username, Password string
	AuthMechanisms     []string
	// AuthInClear advertises AUTH without TLS too, like a misconfigured
	// relay; credentials offered in clear are still refused and recorded.
	AuthInClear bool
	// SMTPUTF8 advertises RFC 6531. Without it non-ASCII addresses get
	// 550 5.6.7 "testsmtp: ...", which tests can tell from a client's own.
	SMTPUTF8 bool
	// No8BitMIME hides 8BITMIME, which go-smtp always advertises. The filter
	// works on plain text, so it needs NoTLS.
	No8BitMIME bool
	// MaxRecipients per transaction; beyond it go-smtp replies 452 4.5.3.
	MaxRecipients int
	// DiscardData records envelopes without the DATA bytes (benchmarks).
	DiscardData bool
}

// Message is one completed transaction.
type Message struct {
	Conn     int           // the connection, numbered from 1 in order of first EHLO
	From     string        // envelope sender
	Rcpts    []string      // accepted recipients
	Data     []byte        // DATA as received, dot-unstuffed, without the final "."
	TLS      bool          // TLS was active
	AuthUser string        // the authenticated username, "" without AUTH
	Body     smtp.BodyType // BODY= of MAIL, "" when absent
	UTF8     bool          // MAIL carried SMTPUTF8
}

// Server is a running capture server. It stops at t.Cleanup.
type Server struct {
	t       testing.TB
	opts    Options
	srv     *smtp.Server
	addr    *net.TCPAddr
	tlsConf *tls.Config
	caPEM   []byte
	caFile  string
	done    chan struct{} // closed by Close; ends stalls

	mu        sync.Mutex
	closed    bool
	ln        net.Listener // nil while refusing
	hold      int          // socket keeping the port while refusing, or -1
	conns     int
	connIDs   map[*smtp.Conn]int
	msgs      []Message
	nrcpt     int
	changed   chan struct{} // closed and replaced at every recorded message
	plainAuth bool
	faults
}

// Start listens on 127.0.0.1:0 and serves until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.No8BitMIME && opts.TLS != NoTLS {
		t.Fatal("testsmtp: No8BitMIME filters plain text and needs TLS: NoTLS")
	}
	s := &Server{t: t, opts: opts, done: make(chan struct{}), hold: -1,
		connIDs: map[*smtp.Conn]int{}, changed: make(chan struct{})}
	s.dropIn = -1
	if opts.TLS != NoTLS {
		var err error
		if s.tlsConf, s.caPEM, err = newCertificates(); err != nil {
			t.Fatalf("testsmtp: certificates: %v", err)
		}
		s.caFile = filepath.Join(t.TempDir(), "testsmtp-ca.pem")
		if err := os.WriteFile(s.caFile, s.caPEM, 0o644); err != nil {
			t.Fatalf("testsmtp: %v", err)
		}
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "testsmtp.localhost"
	s.srv.EnableSMTPUTF8, s.srv.MaxRecipients = opts.SMTPUTF8, opts.MaxRecipients
	// The session refuses AUTH without TLS itself, after recording that
	// credentials were offered in clear; go-smtp would refuse it unseen.
	s.srv.AllowInsecureAuth = true
	// A safety net against leaked connections, far above any test's needs.
	s.srv.ReadTimeout, s.srv.WriteTimeout = 2*time.Minute, 2*time.Minute
	s.srv.ErrorLog = errorLog{s}
	if opts.TLS == StartTLS {
		s.srv.TLSConfig = s.tlsConf
	}
	ln, err := listen(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("testsmtp: %v", err)
	}
	s.addr = ln.Addr().(*net.TCPAddr)
	s.mu.Lock()
	s.serve(ln)
	s.mu.Unlock()
	t.Cleanup(s.Close)
	return s
}

// serve starts serving ln; s.mu is held.
func (s *Server) serve(ln net.Listener) {
	if s.opts.TLS == ImplicitTLS {
		ln = tls.NewListener(ln, s.tlsConf)
	}
	s.ln = &listener{Listener: ln, s: s}
	go s.srv.Serve(s.ln) // returns when the listener is closed
}

// Addr is "127.0.0.1:port"; it stays the same across Refuse and Resume.
func (s *Server) Addr() string { return s.addr.String() }

// CAPEM is the PEM of the CA that signed the server's certificate (for
// "localhost" and 127.0.0.1); nil with NoTLS.
func (s *Server) CAPEM() []byte { return s.caPEM }

// CAFile is a file holding CAPEM, for config.Relay.CAFile; "" with NoTLS.
func (s *Server) CAFile() string { return s.caFile }

// Close closes the listener and every connection and ends stalled DATA
// replies. Start registers it with t.Cleanup; calling it again is harmless.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	if s.ln != nil {
		s.ln.Close()
	}
	if s.hold >= 0 {
		release(s.hold)
	}
	s.mu.Unlock()
	s.srv.Close()
}

// Refuse stops listening: new connections are refused (ECONNREFUSED),
// established ones go on, and the port stays reserved for Resume.
func (s *Server) Refuse() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ln == nil {
		return
	}
	fd, err := reserve(s.addr) // before closing: the port is never free
	if err != nil {
		s.t.Errorf("testsmtp: reserving %s: %v", s.addr, err)
		return
	}
	s.hold = fd
	s.ln.Close()
	s.ln = nil
}

// Resume listens again, on the same port, after Refuse.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ln != nil {
		return
	}
	ln, err := listen(s.addr)
	if err != nil {
		s.t.Errorf("testsmtp: listening again on %s: %v", s.addr, err)
		return
	}
	release(s.hold)
	s.hold = -1
	s.serve(ln)
}

// Connections is the number of TCP connections accepted so far, including
// those turned away by the connect hook.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// PlaintextAuth reports whether an AUTH command ever arrived on a
// connection without TLS (with PLAIN, the credentials are in it).
func (s *Server) PlaintextAuth() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.plainAuth
}

// Messages returns a copy of the recorded transactions in completion order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs) // a recorded Rcpts is never written again
}

// Recipients returns the accepted recipients of every recorded message with
// multiplicity: a recipient delivered twice appears twice.
func (s *Server) Recipients() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, s.nrcpt)
	for _, m := range s.msgs {
		out = append(out, m.Rcpts...)
	}
	return out
}

// WaitRecipients waits until at least n recipients have been recorded and
// fails the test after timeout. Call it from the test goroutine.
func (s *Server) WaitRecipients(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, changed := s.nrcpt, s.changed
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("testsmtp: %d recipients recorded after %v, want %d", got, timeout, n)
		}
	}
}

func (s *Server) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	s.nrcpt += len(m.Rcpts)
	close(s.changed)
	s.changed = make(chan struct{})
}

// errorLog shows go-smtp's internal errors (such as recovered panics in a
// hook) in the test log, but not once the test is over, which would panic.
type errorLog struct{ s *Server }

func (l errorLog) Printf(format string, v ...any) { l.Println(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if !l.s.closed {
		l.s.t.Log(append([]any{"testsmtp:"}, v...)...)
	}
}
