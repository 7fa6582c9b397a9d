package milter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// The test configuration: two restricted addresses on the organisation's
// domain, one of LEGO's, the LEGO token-file prefix.
const testTOML = `
hostname = "mx.example.org"
recipient_delimiter = "+"

[store]
path = "state.db"

[milter]
read_timeout = "30s"
write_timeout = "10s"

[tokens]
prefix = "LEGOTOKEN"
header = "X-Restricted-Token"

[[lists]]
address = "board@example.org"
name = "Example Board"
recipients = ["alice@example.net"]
bounce_address = "board-bounces@example.org"

[[lists]]
address = "events@example.org"
name = "Events"
recipients = ["bob@example.net"]
bounce_address = "events-bounces@example.org"

[[lists]]
address = "restricted@abakus.no"
name = "Abakus"
recipients = ["carol@example.net"]
bounce_address = "restricted-bounces@abakus.no"
`

const (
	board      = "board@example.org"
	events     = "events@example.org"
	lego       = "restricted@abakus.no"
	ordinary   = "dave@example.org"
	sender     = "poster@example.net"
	testQueue  = "4Xq1Yz2Hk9z1"
	chunkLimit = int(gomilter.DataSize64K)
)

// rulesOf returns the rules of cfg, built once.
func rulesOf(cfg *config.Config) func() *policy.Rules {
	r := generation.Rules(cfg)
	return func() *policy.Rules { return r }
}

func testConfig(t testing.TB, dir string) *config.Config {
	t.Helper()
	cfg, problems := config.Parse([]byte(testTOML), filepath.Join(dir, "restrictedmail.toml"))
	if cfg == nil {
		t.Fatalf("test configuration: %v", problems)
	}
	return cfg
}

// logBuffer collects the server's log lines; slog handlers write from the
// sessions' goroutines.
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

// harness is a real Server on 127.0.0.1:0 with a real SQLite store.
type harness struct {
	cfg  *config.Config
	db   *store.DB
	addr string
	logs *logBuffer
}

func newHarness(t testing.TB, mods ...func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{cfg: testConfig(t, dir), logs: &logBuffer{}}
	db, err := store.Open(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	h.db = db
	opts := Options{
		Rules:  rulesOf(h.cfg),
		Tokens: db,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, mod := range mods {
		mod(&opts)
	}
	srv := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
		db.Close()
	})
	return h
}

// addToken stores a record for a new token (bound to board@example.org,
// one use, no expiry, unless mod says otherwise) and returns the token.
func (h *harness) addToken(t testing.TB, mod func(*token.Record)) string {
	t.Helper()
	tok := token.Generate()
	h.addRecord(t, tok, mod)
	return tok
}

func (h *harness) addRecord(t testing.TB, tok string, mod func(*token.Record)) {
	t.Helper()
	rec := token.Record{
		ID:          token.NewID(),
		Hash:        token.HashOf(tok),
		List:        board,
		Created:     time.Now().UTC(),
		UsesAllowed: 1,
	}
	if mod != nil {
		mod(&rec)
	}
	if err := h.db.AddToken(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
}

// session opens an MTA connection the way Postfix does, queue id macro
// included. Conn and Helo are always called, even when negotiated away:
// the go-milter client tracks its state with them.
func (h *harness) session(t testing.TB) *gomilter.ClientSession {
	t.Helper()
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, testQueue)
	return h.sessionOf(t, macros)
}

// sessionOf opens an MTA connection that sends macros.
func (h *harness) sessionOf(t testing.TB, macros *gomilter.MacroBag) *gomilter.ClientSession {
	t.Helper()
	cs, err := gomilter.NewClient("tcp", h.addr).Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	if _, err := cs.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Helo("client.example.net"); err != nil {
		t.Fatal(err)
	}
	return cs
}

type field struct{ name, value string }

// testMessage is one SMTP transaction. Addresses are bare: the client adds
// the angle brackets.
type testMessage struct {
	from    string
	rcpts   []string
	headers []field
	body    io.Reader
}

// outcome is what the milter answered.
type outcome struct {
	rcpt  []*gomilter.Action // one per recipient
	stage string             // where the message was decided: data, eoh, eom; rcpt when every recipient was refused
	act   *gomilter.Action   // the decision on the message
}

// send runs m through cs like Postfix: recipients the milter refuses are
// left out; a decision before end of message ends the transaction (Abort,
// as Postfix sends it before the next MAIL FROM).
func send(t testing.TB, cs *gomilter.ClientSession, m testMessage) outcome {
	t.Helper()
	var out outcome
	if _, err := cs.Mail(m.from, ""); err != nil {
		t.Fatalf("Mail: %v", err)
	}
	accepted := 0
	for _, r := range m.rcpts {
		act, err := cs.Rcpt(r, "")
		if err != nil {
			t.Fatalf("Rcpt %s: %v", r, err)
		}
		out.rcpt = append(out.rcpt, act)
		if act.Type == gomilter.ActionContinue {
			accepted++
		}
	}
	end := func(stage string, act *gomilter.Action) outcome {
		out.stage, out.act = stage, act
		if err := cs.Abort(nil); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		return out
	}
	if accepted == 0 {
		return end("rcpt", nil)
	}
	act, err := cs.DataStart()
	if err != nil {
		t.Fatalf("DataStart: %v", err)
	}
	if act.Type != gomilter.ActionContinue {
		return end("data", act)
	}
	for _, f := range m.headers {
		// Postfix strips the space after the colon; the client does not,
		// so this sends what a raw header line holds.
		if act, err := cs.HeaderField(f.name, " "+f.value, nil); err != nil || act.Type != gomilter.ActionContinue {
			t.Fatalf("HeaderField %s: %v %v", f.name, act, err)
		}
	}
	if act, err = cs.HeaderEnd(); err != nil {
		t.Fatalf("HeaderEnd: %v", err)
	}
	if act.Type != gomilter.ActionContinue {
		return end("eoh", act)
	}
	if m.body != nil {
		buf := make([]byte, chunkLimit)
		for {
			n, rerr := io.ReadFull(m.body, buf)
			if n > 0 {
				if act, err := cs.BodyChunk(buf[:n]); err != nil || act.Type != gomilter.ActionContinue {
					t.Fatalf("BodyChunk: %v %v", act, err)
				}
			}
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				break
			}
			if rerr != nil {
				t.Fatal(rerr)
			}
		}
	}
	_, act, err = cs.End()
	if err != nil {
		t.Fatalf("End: %v", err)
	}
	out.stage, out.act = "eom", act
	return out
}

// readEML splits a message file into header fields and a body with CRLF
// line endings, as Postfix hands them to a milter.
func readEML(t testing.TB, path string) ([]field, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n")
	var fields []field
	sc := bufio.NewScanner(strings.NewReader(head))
	for sc.Scan() {
		line := sc.Text()
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(fields) > 0 {
			fields[len(fields)-1].value += "\r\n" + line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		fields = append(fields, field{name, strings.TrimPrefix(value, " ")})
	}
	return fields, []byte(strings.ReplaceAll(body, "\n", "\r\n"))
}

// Assertions.

func wantAccept(t testing.TB, out outcome, stage string) {
	t.Helper()
	if out.act == nil || out.act.Type != gomilter.ActionAccept || out.stage != stage {
		t.Fatalf("got %v at %s, want accept at %s", out.act, out.stage, stage)
	}
}

func wantReply(t testing.TB, act *gomilter.Action, code uint16, text string) {
	t.Helper()
	if act == nil || act.Type != gomilter.ActionRejectWithCode || act.SMTPCode != code || !strings.Contains(act.SMTPReply, text) {
		t.Fatalf("got %v, want a %d reply containing %q", act, code, text)
	}
}

func wantReject(t testing.TB, out outcome, stage, text string) {
	t.Helper()
	if out.stage != stage {
		t.Fatalf("decided at %s (%v), want at %s", out.stage, out.act, stage)
	}
	wantReply(t, out.act, 550, "550 5.7.1 "+text)
}

func wantContinue(t testing.TB, act *gomilter.Action) {
	t.Helper()
	if act == nil || act.Type != gomilter.ActionContinue {
		t.Fatalf("got %v, want continue", act)
	}
}

// waitLog waits until the log holds every one of parts on one line.
func (h *harness) waitLog(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(h.logs.String(), "\n") {
			if containsAll(line, parts) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", parts, h.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// multipart builds a multipart/mixed body: a text part, then a token part
// (when tok is not empty) carrying prefix+tok in base64, as the LEGO file.
func multipart(prefix, tok string) (contentType string, body []byte) {
	var b bytes.Buffer
	b.WriteString("--b1\r\nContent-Type: text/plain\r\n\r\nHello board.\r\n")
	if tok != "" {
		b.WriteString("--b1\r\nContent-Type: text/plain; name=token.txt\r\nContent-Disposition: attachment; filename=token.txt\r\n\r\n")
		b.WriteString(prefix + tok + "\r\n")
	}
	b.WriteString("--b1--\r\n")
	return "multipart/mixed; boundary=b1", b.Bytes()
}
