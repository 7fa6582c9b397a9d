package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/apitest"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// hook is a portal's webhook receiver: it answers 500 to the first
// failFirst requests, 200 after, and records each with whether it was
// acknowledged.
type hook struct {
	srv       *httptest.Server
	secret    []byte
	failFirst int
	// delay is how long the receiver takes to answer (a slow portal):
	// set before the first request.
	delay time.Duration

	mu   sync.Mutex
	cond *sync.Cond
	reqs []hookReq
}

type hookReq struct {
	id, ts, sig string
	body        []byte
	acked       bool
	at          time.Time
}

func newHook(t *testing.T, failFirst int) *hook {
	h := &hook{secret: []byte("0123456789abcdef0123456789abcdef"), failFirst: failFirst}
	h.cond = sync.NewCond(&h.mu)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if h.delay > 0 {
			time.Sleep(h.delay) // a slow portal, not synchronisation
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		acked := len(h.reqs) >= h.failFirst
		h.reqs = append(h.reqs, hookReq{id: r.Header.Get("webhook-id"), ts: r.Header.Get("webhook-timestamp"),
			sig: r.Header.Get("webhook-signature"), body: body, acked: acked, at: time.Now()})
		h.cond.Broadcast()
		if !acked {
			http.Error(w, "not now", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// waitFor waits until n requests arrived.
func (h *hook) waitFor(t *testing.T, n int, timeout time.Duration) []hookReq {
	t.Helper()
	stop := time.AfterFunc(timeout, func() { h.mu.Lock(); h.cond.Broadcast(); h.mu.Unlock() })
	defer stop.Stop()
	deadline := time.Now().Add(timeout)
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.reqs) < n && time.Now().Before(deadline) {
		h.cond.Wait()
	}
	if len(h.reqs) < n {
		t.Fatalf("the webhook receiver got %d requests within %s, want %d", len(h.reqs), timeout, n)
	}
	return append([]hookReq(nil), h.reqs...)
}

// valid checks a request's signature as a receiver would, with its own
// HMAC (Standard Webhooks: base64 HMAC-SHA256 of "id.timestamp.body").
func (h *hook) valid(r hookReq) bool {
	mac := hmac.New(sha256.New, h.secret)
	mac.Write([]byte(r.id + "." + r.ts + "."))
	mac.Write(r.body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ts, err := strconv.ParseInt(r.ts, 10, 64)
	return err == nil && hmac.Equal([]byte(r.sig), []byte(want)) && time.Since(time.Unix(ts, 0)) < 5*time.Minute
}

// apiWorld is a world with the API on a free loopback port and a
// webhook receiver for delivery.completed; it returns the world and the
// API's base URL.
func apiWorld(t *testing.T, o worldOpts, h *hook) (*world, string) {
	t.Helper()
	port := freePort(t)
	o.extra += "[api]\nlisten = \"inet:127.0.0.1:" + port + "\"\n"
	o.extra += "[http]\nlisten = \"inet:127.0.0.1:" + freePort(t) + "\"\n"
	if h != nil {
		secret := filepath.Join(t.TempDir(), "webhook.secret")
		if err := os.WriteFile(secret, []byte("whsec_"+base64.StdEncoding.EncodeToString(h.secret)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		o.extra += fmt.Sprintf("[[webhooks]]\nurl = %q\nsecret_file = %q\nevents = [\"delivery.completed\"]\nbackoff = \"2s\"\n", h.srv.URL+"/hooks/rm", secret)
	}
	return newWorld(t, o), "http://127.0.0.1:" + port
}

// apikey creates an API key with the command, beside the running daemon.
func (w *world) apikey(args ...string) string {
	w.t.Helper()
	out, err := exec.Command(binary, append([]string{"apikey", "create", "--config", w.conf}, args...)...).CombinedOutput()
	if err != nil {
		w.t.Fatalf("apikey create: %v\n%s", err, out)
	}
	key, _, _ := strings.Cut(string(out), "\n")
	return key
}

// TestAPIThroughPostfix: a token issued through the API, its token file
// attached to a mail submitted to a real Postfix, reaches exactly the
// recipients given to the API; the portal's webhook receiver, which fails
// the first two attempts, gets delivery.completed acknowledged once, with
// a valid signature, although the daemon was restarted between the
// attempts.
func TestAPIThroughPostfix(t *testing.T) {
	t.Parallel()
	h := newHook(t, 2)
	w, base := apiWorld(t, worldOpts{milter: true}, h)
	c := apitest.New(t, base, w.apikey("--name", "lego", "--list", list, "--scope", "issue,read"))
	rcpts := []string{"r1@example.net", "R2@example.com"}
	r := c.Do(t, apitest.Request{Method: "POST", Path: "/lists/" + list + "/tokens",
		Body: map[string]any{"sender": author, "recipients": rcpts, "owner": "user:7", "external_ref": "lego:99"}})
	if r.Status != 201 {
		t.Fatalf("issue: %d %s", r.Status, r.Body)
	}
	var iss struct {
		ID, Token string
		TokenFile string `json:"token_file"`
	}
	r.JSON(t, &iss)

	if res := w.submit(author, []string{list}, fileMessage([]byte(iss.TokenFile))); res.Data != nil {
		t.Fatalf("Postfix refused the tokened message: %v (rcpt %v)", res.Data, res.Rcpt)
	}
	w.relay.WaitRecipients(t, 2, waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.relay.Recipients(), rcpts)

	first := h.waitFor(t, 1, waitMail)[0]
	w.rm.stop()
	restarted := time.Now()
	w.rm = startDaemon(t, w.conf)
	reqs := h.waitFor(t, 3, waitMail)
	until(t, time.Now().Add(waitMail), "the webhook queue is empty", func() bool {
		db, err := store.Open(context.Background(), w.db)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		pending, _, err := db.WebhookStats(context.Background())
		return err == nil && pending == 0
	})
	reqs = h.waitFor(t, 3, time.Second)
	// The metrics say the queue is empty and the delivery acknowledged.
	metrics := scrape(t, "http://"+w.httpAddr())
	if metrics.Get("restrictedmail_webhooks_pending") != 0 || metrics.Get("restrictedmail_webhooks_failed") != 0 ||
		metrics.Get("restrictedmail_webhook_attempts_total", "result", "delivered") != 1 {
		t.Errorf("webhook metrics: pending %v, failed %v, delivered %v", metrics.Get("restrictedmail_webhooks_pending"),
			metrics.Get("restrictedmail_webhooks_failed"), metrics.Get("restrictedmail_webhook_attempts_total", "result", "delivered"))
	}
	acked := 0
	for i, q := range reqs {
		if q.id != first.id {
			t.Errorf("request %d has webhook-id %q, the first %q: one message, one id", i, q.id, first.id)
		}
		if !h.valid(q) {
			t.Errorf("request %d: invalid signature %q", i, q.sig)
		}
		if q.acked {
			acked++
		}
	}
	if len(reqs) != 3 || acked != 1 {
		t.Errorf("%d requests, %d acknowledged; want 3 and 1", len(reqs), acked)
	}
	if !first.at.Before(restarted) || !reqs[len(reqs)-1].at.After(restarted) {
		t.Errorf("the daemon was not restarted between the first attempt and the acknowledged one")
	}
	var ev struct {
		Type string `json:"type"`
		Data struct {
			TokenID     string `json:"token_id"`
			List        string `json:"list"`
			Owner       string `json:"owner"`
			ExternalRef string `json:"external_ref"`
			Recipients  struct{ Delivered, Failed int }
		} `json:"data"`
	}
	if err := json.Unmarshal(reqs[2].body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "delivery.completed" || ev.Data.TokenID != iss.ID || ev.Data.List != list || ev.Data.Owner != "user:7" ||
		ev.Data.ExternalRef != "lego:99" || ev.Data.Recipients.Delivered != 2 || ev.Data.Recipients.Failed != 0 {
		t.Errorf("event %s", reqs[2].body)
	}
	// The API reads the delivery back; nothing secret is in the logs.
	r = c.Do(t, apitest.Request{Method: "GET", Path: "/tokens/" + iss.ID + "/deliveries"})
	if r.Status != 200 || !strings.Contains(string(r.Body), `"state":"completed"`) {
		t.Errorf("deliveries: %d %s", r.Status, r.Body)
	}
	if strings.Contains(w.rm.log.String(), iss.Token) {
		t.Error("the token is in the log")
	}
}

// legoToken is a token as LEGO's get_random_string(128) makes them.
func legoToken() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 128)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

// TestLEGOImport: an export of LEGO's unspent restricted mails is imported
// beside the running daemon; a LEGO token file for one of them is accepted
// through Postfix and distributed to exactly its recipients; the plain
// tokens are in no file of the store.
func TestLEGOImport(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, prefix: "LEGOTOKEN"})
	toks := []string{legoToken(), legoToken()}
	export := filepath.Join(w.dir, "lego.csv")
	f, err := os.Create(export)
	if err != nil {
		t.Fatal(err)
	}
	cw := csv.NewWriter(f)
	cw.WriteAll([][]string{
		{"id", "sender", "token", "hide_sender", "recipients"},
		{"17", "Alice@Example.NET", toks[0], "f", "{r1@example.net,r2@example.com}"},
		{"18", "bob@example.net", toks[1], "t", "r3@example.net r4@example.com"},
	})
	f.Close()
	run := func() string {
		out, err := exec.Command(binary, "token", "import", "--config", w.conf, "--format", "lego", "--list", list, export).CombinedOutput()
		if err != nil {
			t.Fatalf("token import: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, "2 token(s) imported, 0 already here") {
		t.Errorf("import said:\n%s", out)
	}
	if out := run(); !strings.Contains(out, "0 token(s) imported, 2 already here") {
		t.Errorf("the second import said:\n%s", out)
	}
	// LEGO's token file: LEGOTOKEN and the token, no newline.
	if res := w.submit(author, []string{list}, fileMessage([]byte("LEGOTOKEN"+toks[0]))); res.Data != nil {
		t.Fatalf("Postfix refused LEGO's token file: %v (rcpt %v)", res.Data, res.Rcpt)
	}
	w.relay.WaitRecipients(t, 2, waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.relay.Recipients(), []string{"r1@example.net", "r2@example.com"})
	rec := w.tokenByValue(toks[0])
	if rec.UsesLeft() != 0 || rec.ExternalRef != "lego:17" || rec.Sender != "alice@example.net" {
		t.Errorf("imported record %+v", rec)
	}
	// The second token is still unspent, for bob only.
	if rec := w.tokenByValue(toks[1]); rec.UsesLeft() != 1 || !rec.HideSender {
		t.Errorf("second record %+v", rec)
	}
	// No plain token in any file of the store (database, WAL, spool).
	filepath.WalkDir(filepath.Dir(w.db), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == export {
			return nil
		}
		if !strings.HasPrefix(filepath.Base(path), "state.db") && !strings.Contains(path, "spool") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, tok := range toks {
			for _, form := range []string{tok, strings.ToLower(tok)} {
				if strings.Contains(string(data), form) {
					t.Errorf("%s holds a plain LEGO token", path)
				}
			}
		}
		return nil
	})
	if rec.Hash != token.HashOf(toks[0]) {
		t.Error("the stored hash is not the token's")
	}
}

// httpAddr reads the [http] endpoint's address from the configuration.
func (w *world) httpAddr() string {
	w.t.Helper()
	cfg, problems := config.Load(w.conf)
	if cfg == nil {
		w.t.Fatal(problems.Error())
	}
	return cfg.HTTP.Addr.Address
}
