package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/apikey"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/daemon"
	"github.com/restrictedmail/restrictedmail/internal/apitest"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/milterclient"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// The API is tested against `serve` itself — daemon.Start, as `restrictedmail
// serve` runs it — with a real HTTP client over loopback, the real milter and
// LMTP endpoint beside it, and a capture relay; every exchange goes through
// internal/apitest, which validates it against api/openapi.yaml.

const (
	board  = "board@example.org"
	events = "events@example.org"
	alice  = "alice@example.net"
)

var members = []string{"m1@example.net", "m2@example.com", "m3@example.com"}

type env struct {
	t     *testing.T
	d     *daemon.Daemon
	db    string
	relay *testsmtp.Server
	log   *logBuffer
	base  string
}

// logBuffer collects the daemon's log.
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

// start runs a daemon with the milter, the LMTP endpoint and the API on
// loopback ports; extra is TOML appended to [api] (e.g. failure limits).
func start(t *testing.T, extra string) *env {
	t.Helper()
	if !strings.Contains(extra, "auth_failure_delay") {
		extra += "auth_failure_delay = \"10ms\"\n"
	}
	dir := t.TempDir()
	relay := testsmtp.Start(t, testsmtp.Options{})
	key := dkimtest.NewKey(t, "ed25519", "example.org", "rm1")
	doc := `hostname = "mx.example.org"
[store]
path = "state.db"
[milter]
listen = "inet:127.0.0.1:0"
[lmtp]
listen = "inet:127.0.0.1:0"
[relay]
address = "` + relay.Addr() + `"
[tokens]
guess_limit = 0
max_recipients = 5000
[api]
listen = "inet:127.0.0.1:0"
` + extra + `
[[dkim]]
domain = "example.org"
selector = "rm1"
private_key_file = "` + key.Config.PrivateKeyFile + `"
[[lists]]
address = "` + board + `"
name = "Board"
recipients = ["` + strings.Join(members, `", "`) + `"]
bounce_address = "board-bounces@example.org"
[[lists]]
address = "` + events + `"
name = "Events"
bounce_address = "events-bounces@example.org"
`
	path := filepath.Join(dir, "restrictedmail.toml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, problems := config.Load(path)
	if cfg == nil {
		t.Fatal(problems.Error())
	}
	lb := &logBuffer{}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, d: d, db: cfg.Store.Path, relay: relay, log: lb, base: "http://" + d.APIAddr().String()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", lb.String())
		}
	})
	return e
}

// key creates an API key in the store, as `restrictedmail apikey create`
// does, and returns it.
func (e *env) key(name string, lists []string, scopes []string, mod func(*store.APIKey)) string {
	e.t.Helper()
	db, err := store.Open(context.Background(), e.db)
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	k, h := apikey.Generate()
	rec := store.APIKey{ID: apikey.NewID(), Name: name, Hash: h, Lists: lists, Scopes: scopes, Created: time.Now().UTC()}
	if mod != nil {
		mod(&rec)
	}
	if err := db.AddAPIKey(context.Background(), rec); err != nil {
		e.t.Fatal(err)
	}
	return k
}

func (e *env) client(key string) *apitest.Client { return apitest.New(e.t, e.base, key) }

// fullKey may do everything on every list.
func (e *env) fullKey() string { return e.key("portal", []string{"*"}, apikey.AllScopes, nil) }

// message is a message to board@ with the token file attached (tok "":
// none).
func message(prefix, tok, subject string) []byte {
	m := "From: Alice <" + alice + ">\r\nTo: " + board + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + token.NewID() + "@example.net>\r\n" +
		"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nHi.\r\n"
	if tok != "" {
		m += "--b1\r\nContent-Type: text/plain; name=token.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64.StdEncoding.EncodeToString(token.FileContent(prefix, tok)) + "\r\n"
	}
	return []byte(m + "--b1--\r\n")
}

// milter asks the daemon's milter about msg for list.
func (e *env) milter(list string, msg []byte) milterclient.Verdict {
	e.t.Helper()
	v, err := milterclient.Ask("tcp", e.d.MilterAddr().String(), alice, []string{list}, msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// lmtp hands msg to the LMTP endpoint for list and returns the reply (nil:
// 250).
func (e *env) lmtp(list string, msg []byte) error {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.d.LMTPAddr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		e.t.Fatal(err)
	}
	if err := c.Mail(alice, nil); err != nil {
		return err
	}
	if err := c.Rcpt(list, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	_, err = w.CloseWithLMTPResponse()
	var le smtp.LMTPDataError
	if errors.As(err, &le) {
		for _, se := range le {
			return se
		}
	}
	return err
}

// issued is the body of an issue or re-key.
type issued struct {
	ID            string   `json:"id"`
	List          string   `json:"list"`
	Sender        *string  `json:"sender"`
	State         string   `json:"state"`
	UsesAllowed   int      `json:"uses_allowed"`
	UsesLeft      int      `json:"uses_left"`
	Recipients    []string `json:"recipients"`
	RecipientsFor string   `json:"recipients_from"`
	Owner         string   `json:"owner"`
	ExternalRef   string   `json:"external_ref"`
	Token         string   `json:"token"`
	TokenFile     string   `json:"token_file"`
}

// issue issues a token through the API and returns it.
func issue(t *testing.T, c *apitest.Client, list string, body map[string]any) issued {
	t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	r := c.Do(t, apitest.Request{Method: "POST", Path: "/lists/" + list + "/tokens", Body: body})
	if r.Status != 201 {
		t.Fatalf("issue: %d %s", r.Status, r.Body)
	}
	var out issued
	r.JSON(t, &out)
	if loc := r.Header.Get("Location"); loc != "/api/v1/tokens/"+out.ID {
		t.Errorf("Location %q", loc)
	}
	return out
}

// wantProblem checks a problem answer's status and reason.
func wantProblem(t *testing.T, what string, r *apitest.Response, status int, reason string) apitest.Problem {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %d, want %d: %s", what, r.Status, status, r.Body)
		return apitest.Problem{}
	}
	p := r.Problem(t)
	if p.Reason() != reason {
		t.Errorf("%s: reason %q, want %q (%s)", what, p.Reason(), reason, r.Body)
	}
	return p
}

// until waits for cond, up to timeout.
func until(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
