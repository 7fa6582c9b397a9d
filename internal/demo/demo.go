// Package demo shows restrictedmail's main job without Postfix: the daemon
// on the embedded defaults (ephemeral loopback ports, a store in a
// temporary directory, a generated DKIM key), a capture relay standing in
// for the outbound relay, and the milter and LMTP conversations that
// Postfix would have. `restrictedmail demo` runs it.
package demo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/daemon"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/internal/milterclient"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

// Run plays the demo in dir (a fresh, temporary directory), writing the
// story to out and the daemon's log to log.
func Run(ctx context.Context, dir string, out io.Writer, log *slog.Logger) error {
	sink, err := startCapture()
	if err != nil {
		return err
	}
	defer sink.close()
	pub, cfg, err := demoConfig(dir, sink.addr)
	if err != nil {
		return err
	}
	d, err := daemon.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Shutdown(context.Background())
	step := func(format string, args ...any) { fmt.Fprintf(out, "\n== "+format+"\n", args...) }

	step("1. An administrator issues a posting token for %s", demoList)
	tok, err := demoToken(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "token file for the sender to attach: %s", token.FileContent(cfg.Tokens.Prefix, tok))

	msg := demoMessage(cfg.Tokens.Prefix+tok, true)
	step("2. At SMTP time, Postfix asks the milter (%s)", d.MilterAddr())
	for _, c := range []struct {
		what string
		msg  []byte
	}{{"without a token", demoMessage("", false)}, {"with the token attached", msg}} {
		verdict, err := milterclient.Ask("tcp", d.MilterAddr().String(), "alice@example.net", []string{demoList}, c.msg)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "message %s: %s\n", c.what, verdict)
	}

	step("3. Postfix hands the accepted message to the LMTP endpoint (%s)", d.LMTPAddr())
	reply, err := sendLMTP(d.LMTPAddr().String(), msg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "LMTP reply: %s\n", reply)
	copies, err := sink.wait(len(demoRecipients), 10*time.Second)
	if err != nil {
		return err
	}

	step("4. The relay received one copy for %d recipients (envelope sender %s):", len(copies[0].rcpts), copies[0].from)
	fmt.Fprintf(out, "%s\n", strings.Join(copies[0].rcpts, ", "))
	step("5. The redistributed copy")
	out.Write(bytes.ReplaceAll(copies[0].data, []byte("\r\n"), []byte("\n")))
	step("6. DKIM verification of the copy (key published as rm1._domainkey.example.org)")
	fmt.Fprintln(out, verifyDKIM(copies[0].data, pub))
	fmt.Fprintf(out, "token still in the copy: %v\n", bytes.Contains(bytes.ToLower(copies[0].data), []byte(tok)))

	step("7. The same token again, on a new message")
	reply, err = sendLMTP(d.LMTPAddr().String(), demoMessage(cfg.Tokens.Prefix+tok, true))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "LMTP reply: %s\n", reply)
	return nil
}

const demoList = "board@example.org"

var demoRecipients = []string{"alice@example.net", "bob@example.com", "carol@example.com"}

func demoConfig(dir, relayAddr string) (ed25519.PublicKey, *config.Config, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	keyFile := filepath.Join(dir, "dkim.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, nil, err
	}
	cfg := config.Default()
	cfg.File = filepath.Join(dir, "restrictedmail.toml")
	cfg.Hostname = "mx.example.org"
	cfg.Store.Path = filepath.Join(dir, "state.db")
	cfg.Milter.Listen = "inet:127.0.0.1:0"
	cfg.LMTP.Listen = "inet:127.0.0.1:0"
	cfg.Relay.Address = relayAddr
	cfg.DKIM = []config.DKIM{{Domain: "example.org", Selector: "rm1", PrivateKeyFile: keyFile}}
	cfg.Lists = []config.List{{
		Address: demoList, Name: "Example Board", Recipients: demoRecipients,
		BounceAddress: "board-bounces@example.org",
	}}
	if problems := config.Check(cfg); problems.HasErrors() {
		return nil, nil, fmt.Errorf("demo configuration: %s", problems.Error())
	}
	return pub, cfg, nil
}

func demoToken(ctx context.Context, cfg *config.Config) (string, error) {
	db, err := generation.OpenStore(ctx, cfg.Store)
	if err != nil {
		return "", err
	}
	defer db.Close()
	ttl := time.Hour
	tok, rec, err := policy.NewToken(generation.Rules(cfg), policy.IssueRequest{List: demoList, TTL: &ttl}, time.Now())
	if err != nil {
		return "", err
	}
	return tok, db.AddToken(ctx, rec)
}

func demoMessage(tokenFile string, withToken bool) []byte {
	var b strings.Builder
	b.WriteString("From: Alice Author <alice@example.net>\r\nTo: Example Board <board@example.org>\r\n" +
		"Subject: Minutes of the meeting\r\nMessage-ID: <" + token.NewID() + "@example.net>\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello board, the minutes follow.\r\n")
	if withToken {
		b.WriteString("--b1\r\nContent-Type: text/plain; name=\"token.txt\"\r\nContent-Disposition: attachment; filename=\"token.txt\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(tokenFile+"\n")) + "\r\n")
	}
	b.WriteString("--b1--\r\n")
	return []byte(b.String())
}

// sendLMTP plays Postfix's LMTP client and returns the per-recipient reply.
func sendLMTP(addr string, msg []byte) (string, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		return "", err
	}
	if err := c.Mail("alice@example.net", nil); err != nil {
		return "", err
	}
	if err := c.Rcpt(demoList, nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(msg); err != nil {
		return "", err
	}
	replies, err := w.CloseWithLMTPResponse()
	var le smtp.LMTPDataError
	switch {
	case errors.As(err, &le):
		for _, se := range le {
			// go-smtp's text already starts with "<rcpt> ".
			return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message), nil
		}
	case err != nil:
		return "", err
	}
	for _, r := range replies {
		return "250 " + r.StatusText, nil
	}
	return "", errors.New("no LMTP reply")
}

func verifyDKIM(msg []byte, pub ed25519.PublicKey) string {
	record := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(string) ([]string, error) { return []string{record}, nil },
	})
	if err != nil {
		return "dkim=permerror (" + err.Error() + ")"
	}
	// The copy carries one signature, the list's.
	switch {
	case len(vs) == 0:
		return "dkim=none"
	case vs[0].Err != nil:
		return "dkim=fail (" + vs[0].Err.Error() + ")"
	}
	return "dkim=pass header.d=" + vs[0].Domain
}

// capture is the demo's stand-in for the outbound relay.
type capture struct {
	addr string
	srv  *smtp.Server
	mu   sync.Mutex
	msgs []captured
	got  chan struct{}
}

type captured struct {
	from  string
	rcpts []string
	data  []byte
}

func startCapture() (*capture, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &capture{addr: ln.Addr().String(), got: make(chan struct{}, 1)}
	c.srv = smtp.NewServer(c)
	c.srv.Domain = "relay.example.net"
	c.srv.EnableSMTPUTF8 = true
	go c.srv.Serve(ln)
	return c, nil
}

func (c *capture) close() { c.srv.Close() }

func (c *capture) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &captureSession{c: c}, nil
}

// wait returns the captured messages once they hold n recipients.
func (c *capture) wait(n int, timeout time.Duration) ([]captured, error) {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		total := 0
		for _, m := range c.msgs {
			total += len(m.rcpts)
		}
		msgs := append([]captured(nil), c.msgs...)
		c.mu.Unlock()
		if total >= n && len(msgs) > 0 {
			return msgs, nil
		}
		select {
		case <-c.got:
		case <-deadline:
			return nil, fmt.Errorf("the relay received %d of %d recipients", total, n)
		}
	}
}

type captureSession struct {
	c     *capture
	from  string
	rcpts []string
}

func (s *captureSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *captureSession) Logout() error { return nil }
func (s *captureSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *captureSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if _, err := address.Parse(to); err != nil {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "bad address"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *captureSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.c.mu.Lock()
	s.c.msgs = append(s.c.msgs, captured{from: s.from, rcpts: s.rcpts, data: data})
	s.c.mu.Unlock()
	select {
	case s.c.got <- struct{}{}:
	default:
	}
	return nil
}
