package relay

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

// TestDotWriter checks the DATA encoding against net/textproto's, for
// messages cut into two writes at every possible point.
func TestDotWriter(t *testing.T) {
	for _, msg := range []string{
		"",
		"a",
		".",
		"..\r\n",
		"Subject: x\r\n\r\n.leading dot\r\nbody\r\n",
		"bare\nline feeds\n.dot after LF\n",
		"cr at end\r",
		"\r\n.\r\n..\r\n.x",
		"no final newline",
		"mixed\r\nends\n\r\n.\n",
	} {
		var want bytes.Buffer
		tw := textproto.NewWriter(bufio.NewWriter(&want)).DotWriter()
		io.WriteString(tw, msg)
		tw.Close()
		for cut := 0; cut <= len(msg); cut++ {
			var got bytes.Buffer
			dw := &dotWriter{w: bufio.NewWriter(&got), bol: true}
			for _, part := range []string{msg[:cut], msg[cut:]} {
				if n, err := dw.Write([]byte(part)); n != len(part) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := dw.Close(); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("%q cut at %d: %q, want %q", msg, cut, got.String(), want.String())
			}
		}
	}
}

// TestLargeTransactionsPipelined sends transactions larger than one
// pipelined window, with refused recipients in every window, and a refused
// sender whose transaction spans windows: the replies stay matched to
// their commands, and the connection stays usable.
func TestLargeTransactionsPipelined(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		if strings.HasSuffix(rcpt, "7@example.net") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	cfg := relayConfig(srv)
	cfg.MaxRecipients, cfg.Connections = 250, 1
	rcpts := addresses(600, "r%03d@example.net")
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for _, r := range rcpts {
		if strings.HasSuffix(r, "7@example.net") {
			wantErr(t, res, r, StageRcpt, false, 550)
		} else {
			wantErr(t, res, r, "", false, 0)
		}
	}
	if m := srv.Messages(); len(m) != 3 || srv.Connections() != 1 {
		t.Fatalf("%d messages over %d connections, want 3 over 1", len(m), srv.Connections())
	}

	refusing := testsmtp.Start(t, testsmtp.Options{})
	refusing.SetMailHook(func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "not your address"}
	})
	cfg = relayConfig(refusing)
	cfg.MaxRecipients, cfg.Connections = 250, 1
	res = send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for _, r := range rcpts {
		wantErr(t, res, r, StageMail, true, 553)
	}
	if n := refusing.Connections(); n != 1 {
		t.Fatalf("%d connections, want 1: a refused sender leaves the connection usable", n)
	}
}

// TestWithoutPipelining talks to a relay that does not offer PIPELINING:
// each command waits for its reply, a transaction whose recipients are all
// refused sends no DATA, and the results are those of a pipelining relay.
func TestWithoutPipelining(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		if strings.HasPrefix(rcpt, "bad") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
		}
		return nil
	})
	p := hidePipelining(t, srv.Addr())
	cfg := relayConfig(srv)
	cfg.Address, cfg.MaxRecipients, cfg.Connections = p.addr, 2, 1
	rcpts := []string{"bad1@example.net", "bad2@example.net", "good1@example.net", "bad3@example.net", "good2@example.net"}
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for _, r := range rcpts {
		if strings.HasPrefix(r, "bad") {
			wantErr(t, res, r, StageRcpt, false, 550)
		} else {
			wantErr(t, res, r, "", false, 0)
		}
	}
	if m := srv.Messages(); len(m) != 2 || srv.Connections() != 1 {
		t.Fatalf("%d messages over %d connections, want 2 over 1", len(m), srv.Connections())
	}
	if p.datas() != 2 {
		t.Fatalf("%d DATA commands, want 2: none for the transaction without a recipient", p.datas())
	}
}

// pipelineHider is a proxy that removes PIPELINING from EHLO replies and
// counts the DATA commands it forwards.
type pipelineHider struct {
	addr string
	mu   sync.Mutex
	data int
}

func (p *pipelineHider) datas() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.data
}

func hidePipelining(t *testing.T, target string) *pipelineHider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &pipelineHider{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			go p.copyLines(s, c, func(l string) string {
				if strings.EqualFold(strings.TrimSpace(l), "DATA") {
					p.mu.Lock()
					p.data++
					p.mu.Unlock()
				}
				return l
			})
			go p.copyLines(c, s, func(l string) string {
				if strings.Contains(strings.ToUpper(l), "PIPELINING") {
					return l[:4] + "X-HIDDEN\r\n" // keeps the multi-line reply's shape
				}
				return l
			})
		}
	}()
	return p
}

func (p *pipelineHider) copyLines(dst, src net.Conn, edit func(string) string) {
	defer dst.Close()
	defer src.Close()
	r := bufio.NewReader(src)
	for {
		l, err := r.ReadString('\n')
		if l != "" {
			if _, werr := io.WriteString(dst, edit(l)); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestHeloNameWithLineBreak refuses to send a HELO name that would smuggle
// a command in, as go-smtp's client did.
func TestHeloNameWithLineBreak(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	cfg := relayConfig(srv)
	cfg.HeloName = "rm.example.org\r\nRSET"
	res := send(t, t.Context(), newClient(t, cfg), []string{"a@example.net"}, message)
	wantErr(t, res, "a@example.net", StageHelo, true, 0)
	if len(srv.Messages()) != 0 {
		t.Fatal("a message was sent")
	}
}

// TestAuthConnectionLostMidExchange: a relay that drops the connection
// after a challenge ends the SASL exchange with the connection's error,
// not with a made-up reply (a shadowed err once hid it).
func TestAuthConnectionLostMidExchange(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	go func() {
		br := bufio.NewReader(server)
		br.ReadString('\n')                          // AUTH LOGIN
		server.Write([]byte("334 VXNlcm5hbWU6\r\n")) // "Username:"
		br.ReadString('\n')                          // the username
		server.Close()
	}()
	w := newWire(client, 5*time.Second)
	err := w.auth(&loginClient{user: "u", pass: "p"})
	if err == nil {
		t.Fatal("AUTH succeeded on a dropped connection")
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		t.Errorf("got an SMTP reply %v, want the connection's error", se)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("error %v does not carry the lost connection", err)
	}
}
