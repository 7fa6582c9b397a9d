package corpus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
	"github.com/restrictedmail/restrictedmail/lmtp"
	"github.com/restrictedmail/restrictedmail/milter"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/store"
)

// pipeline is the daemon's two adapters in this process, on loopback
// ports, with a real SQLite store, the real relay client and a capture
// SMTP server as the relay; both log at debug level into one buffer.
type pipeline struct {
	cfg     *config.Config
	db      *store.DB
	relay   *testsmtp.Server
	key     dkimtest.Key
	milter  string // address
	lmtp    string // address
	log     *logBuffer
	members []string
}

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const pipelineTOML = `hostname = "mx.example.org"
[log]
level = "debug"
[store]
path = "state.db"
[milter]
listen = "inet:127.0.0.1:0"
[lmtp]
listen = "inet:127.0.0.1:0"
max_message_size = 10485760
[relay]
address = %q
[tokens]
prefix = %q
[[dkim]]
domain = "example.org"
selector = "rm1"
private_key_file = %q
[[lists]]
address = %q
name = "Example Board"
recipients = ["m1@example.net", "m2@example.com", "m3@example.com"]
bounce_address = "board-bounces@example.org"
[[lists]]
address = %q
name = "Events"
recipients = ["e1@example.net"]
bounce_address = "events-bounces@example.org"
`

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	dir := t.TempDir()
	p := &pipeline{log: &logBuffer{}, members: []string{"m1@example.net", "m2@example.com", "m3@example.com"}}
	p.key = dkimtest.NewKey(t, "rsa", "example.org", "rm1")
	p.relay = testsmtp.Start(t, testsmtp.Options{SMTPUTF8: true})
	doc := fmt.Sprintf(pipelineTOML, p.relay.Addr(), Prefix, p.key.Config.PrivateKeyFile, List, EventsList)
	cfg, problems := config.Parse([]byte(doc), filepath.Join(dir, "restrictedmail.toml"))
	if cfg == nil {
		t.Fatalf("configuration: %v", problems)
	}
	p.cfg = cfg
	db, err := store.Open(context.Background(), cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p.db = db
	for _, r := range Records(time.Now()) {
		if err := db.AddToken(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	logger := slog.New(slog.NewTextHandler(p.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gen, err := generation.New(cfg, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ms := milter.New(milter.Options{Rules: func() *policy.Rules { return gen.Rules }, Tokens: db, Logger: logger.With("component", "milter")})
	p.milter = serve(t, ms.Serve, ms.Shutdown)
	ls := lmtp.New(lmtp.Options{
		Settings: func() *delivery.Settings { return gen.Delivery }, Store: db, Logger: logger,
		Hostname: cfg.Hostname, MaxMessageSize: cfg.LMTP.MaxMessageSize, MaxRecipients: cfg.LMTP.MaxRecipients,
	})
	p.lmtp = serve(t, ls.Serve, ls.Shutdown)
	return p
}

func serve(t *testing.T, serve func(net.Listener) error, shutdown func(context.Context) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// verdictOf names the policy reason whose reply is code and text; replies
// the policy does not make are shown as they are.
func verdictOf(code int, text string) string {
	for r := policy.Pass; ; r++ {
		name := r.String()
		if strings.HasPrefix(name, "reason(") {
			break
		}
		rep := policy.Verdict{Reason: r, List: List}.Reply()
		if rep.Code == code && strings.Contains(text, rep.Text) {
			return name
		}
	}
	return fmt.Sprintf("%d %s", code, text)
}

// milterVerdict runs one message through the milter as Postfix does:
// recipient refused at RCPT, or a decision at DATA, end of headers or end
// of message.
func (p *pipeline) milterVerdict(rcpt string, fields []field, body []byte) (string, error) {
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, "4Xq1Yz2Hk9z1")
	macros.Set(gomilter.MacroClientAddr, "192.0.2.1")
	cs, err := gomilter.NewClient("tcp", p.milter).Session(macros)
	if err != nil {
		return "", err
	}
	defer cs.Close()
	if _, err := cs.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.1"); err != nil {
		return "", err
	}
	if _, err := cs.Helo("client.example.net"); err != nil {
		return "", err
	}
	if _, err := cs.Mail(Sender, ""); err != nil {
		return "", err
	}
	act, err := cs.Rcpt(rcpt, "")
	if err != nil || act.Type != gomilter.ActionContinue {
		return actionVerdict(act), err
	}
	if act, err = cs.DataStart(); err != nil || act.Type != gomilter.ActionContinue {
		return actionVerdict(act), err
	}
	for _, f := range fields {
		if act, err := cs.HeaderField(f.name, f.value, nil); err != nil || act.Type != gomilter.ActionContinue {
			return actionVerdict(act), err
		}
	}
	if act, err = cs.HeaderEnd(); err != nil || act.Type != gomilter.ActionContinue {
		return actionVerdict(act), err
	}
	for chunk := range slicesChunk(body, int(gomilter.DataSize64K)) {
		if act, err := cs.BodyChunk(chunk); err != nil || act.Type != gomilter.ActionContinue {
			return actionVerdict(act), err
		}
	}
	_, act, err = cs.End()
	return actionVerdict(act), err
}

func slicesChunk(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}

func actionVerdict(act *gomilter.Action) string {
	switch {
	case act == nil:
		return "no answer"
	case act.Type == gomilter.ActionAccept:
		return "pass"
	case act.Type == gomilter.ActionRejectWithCode:
		// SMTPReply is "550 5.7.1 text".
		return verdictOf(int(act.SMTPCode), act.SMTPReply)
	}
	return fmt.Sprintf("action %v", act.Type)
}

// lmtpVerdict hands one message to the LMTP endpoint as Postfix's lmtp
// client does and returns its reply for the recipient.
func (p *pipeline) lmtpVerdict(rcpt string, data []byte) (string, error) {
	conn, err := net.DialTimeout("tcp", p.lmtp, 10*time.Second)
	if err != nil {
		return "", err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		return "", err
	}
	if err := c.Mail(Sender, &smtp.MailOptions{UTF8: !isASCII(rcpt)}); err != nil {
		return "", err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return "rcpt " + err.Error(), nil
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(data); err != nil {
		return "", err
	}
	_, err = w.CloseWithLMTPResponse()
	if err == nil {
		return "pass", nil
	}
	var le smtp.LMTPDataError
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &le):
		for _, e := range le {
			return verdictOf(e.Code, e.Message), nil
		}
	case errors.As(err, &se):
		return verdictOf(se.Code, se.Message), nil
	}
	return "", err
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// copiesOf counts the copies of the message with Message-ID id per
// recipient.
func (p *pipeline) copiesOf(id string) map[string]int {
	got := map[string]int{}
	for _, m := range p.relay.Messages() {
		if bytes.Contains(m.Data, []byte("Message-ID: <"+id+">")) {
			for _, r := range m.Rcpts {
				got[r]++
			}
		}
	}
	return got
}

// copies returns the redistributed copies captured so far.
func (p *pipeline) copies() [][]byte {
	var out [][]byte
	for _, m := range p.relay.Messages() {
		out = append(out, m.Data)
	}
	return out
}

// leaks returns a description of every secret of the corpus found in the
// copies or the log, nil when there is none. Tokens match in any case.
func leaks(copies [][]byte, log string) []string {
	var found []string
	check := func(where string, b []byte) {
		lower := bytes.ToLower(b)
		for _, s := range Secrets() {
			if bytes.Contains(lower, []byte(strings.ToLower(s))) {
				found = append(found, fmt.Sprintf("%q in %s", s, where))
			}
		}
	}
	for i, c := range copies {
		check(fmt.Sprintf("copy %d", i+1), c)
	}
	check("the log", []byte(log))
	return found
}

var _ io.Writer = (*logBuffer)(nil)
