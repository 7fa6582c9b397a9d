package daemon

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/milterclient"
	"github.com/restrictedmail/restrictedmail/internal/promtext"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

var opsMembers = []string{"m1@example.net", "m2@example.com", "m3@example.com"}

// startOps starts a daemon with the milter, the LMTP endpoint and [http] on
// loopback ports, a capture relay and a DKIM key; it returns the daemon,
// its configuration file and the relay.
func startOps(t *testing.T) (*Daemon, string, *testsmtp.Server) {
	t.Helper()
	return startOpsWith(t, `path = "state.db"`)
}

// startOpsWith is startOps with the keys of [store] given.
func startOpsWith(t *testing.T, storeKeys string) (*Daemon, string, *testsmtp.Server) {
	t.Helper()
	dir := t.TempDir()
	relay := testsmtp.Start(t, testsmtp.Options{})
	key := dkimtest.NewKey(t, "ed25519", "example.org", "rm1")
	doc := `hostname = "mx.example.org"
[store]
` + storeKeys + `
[milter]
listen = "inet:127.0.0.1:0"
[lmtp]
listen = "inet:127.0.0.1:0"
[http]
listen = "inet:127.0.0.1:0"
[relay]
address = "` + relay.Addr() + `"
[[dkim]]
domain = "example.org"
selector = "rm1"
private_key_file = "` + key.Config.PrivateKeyFile + `"
[[lists]]
address = "board@example.org"
name = "Board"
recipients_file = "members.txt"
bounce_address = "board-bounces@example.org"
`
	if err := os.WriteFile(filepath.Join(dir, "members.txt"), []byte(strings.Join(opsMembers, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "restrictedmail.toml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, problems := config.Load(path)
	if cfg == nil {
		t.Fatal(problems.Error())
	}
	d, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return d, path, relay
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func opsMessage(tok string) []byte {
	m := "From: Alice <alice@example.net>\r\nTo: board@example.org\r\nSubject: metrics\r\nMessage-ID: <" + token.NewID() + "@example.net>\r\n" +
		"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nHi.\r\n"
	if tok != "" {
		m += "--b1\r\nContent-Type: text/plain; name=t.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(token.FileContent("RMTOKEN", tok)) + "\r\n"
	}
	return []byte(m + "--b1--\r\n")
}

// lmtpDeliver hands msg to the LMTP endpoint as Postfix would and returns
// the recipient's reply (nil for 250).
func lmtpDeliver(t *testing.T, addr string, msg []byte) error {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("board@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
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

// TestMetricsAfterTraffic: after a milter rejection, an ordinary message,
// a milter pass and its delivery, and two reloads, every metric scraped
// over HTTP has moved by exactly what happened.
func TestMetricsAfterTraffic(t *testing.T) {
	t.Parallel()
	d, conf, relay := startOps(t)
	base := "http://" + d.HTTPAddr().String()
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	before, err := promtext.Fetch(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}

	// The token comes from another store handle, as `token issue` would.
	db, err := store.Open(context.Background(), d.Config().Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	tok := token.Generate()
	rec := token.Record{ID: token.NewID(), Hash: token.HashOf(tok), List: "board@example.org", Created: time.Now().UTC(), UsesAllowed: 1}
	if err := db.AddToken(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	db.Close()

	milter := d.MilterAddr().String()
	for _, c := range []struct {
		rcpt   string
		msg    []byte
		accept bool
	}{
		{"someone@example.org", opsMessage(""), true},
		{"board@example.org", opsMessage(""), false},
		{"board@example.org", opsMessage(tok), true},
	} {
		v, err := milterclient.Ask("tcp", milter, "alice@example.net", []string{c.rcpt}, c.msg)
		if err != nil || v.Accepted != c.accept {
			t.Fatalf("milter for %s: %v, %v; want accepted=%v", c.rcpt, v, err, c.accept)
		}
	}
	if err := lmtpDeliver(t, d.LMTPAddr().String(), opsMessage(tok)); err != nil {
		t.Fatalf("LMTP: %v", err)
	}
	relay.WaitRecipients(t, len(opsMembers), 10*time.Second)

	// A refused reload (a syntax error) and a good one.
	good, _ := os.ReadFile(conf)
	if err := os.WriteFile(conf, append(good, "[broken\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.ReloadFile(conf); !errors.Is(err, ErrReloadRefused) {
		t.Errorf("broken reload: %v", err)
	}
	if err := os.WriteFile(conf, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.ReloadFile(conf); err != nil {
		t.Errorf("good reload: %v", err)
	}

	after, err := promtext.Fetch(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		delta  float64
		name   string
		labels []string
	}{
		{1, "restrictedmail_milter_verdicts_total", []string{"reason", "ordinary"}},
		{1, "restrictedmail_milter_verdicts_total", []string{"reason", "no_token"}},
		{1, "restrictedmail_milter_verdicts_total", []string{"reason", "pass"}},
		{0, "restrictedmail_milter_verdicts_total", []string{"reason", "unknown_token"}},
		{1, "restrictedmail_milter_token_check_duration_seconds_count", nil},
		{1, "restrictedmail_lmtp_deliveries_total", []string{"outcome", "delivered"}},
		{0, "restrictedmail_lmtp_deliveries_total", []string{"outcome", "refused"}},
		{1, "restrictedmail_lmtp_delivery_duration_seconds_count", nil},
		{3, "restrictedmail_recipients_total", []string{"outcome", "delivered"}},
		{0, "restrictedmail_recipients_total", []string{"outcome", "failed"}},
		{1, "restrictedmail_relay_connections_total", []string{"result", "ok"}},
		{1, "restrictedmail_relay_transactions_total", []string{"result", "delivered"}},
		{1, "restrictedmail_relay_transaction_duration_seconds_count", nil},
		{1, "restrictedmail_tokens_issued_total", []string{"list", "board@example.org"}},
		{1, "restrictedmail_tokens_spent_total", []string{"list", "board@example.org"}},
		{0, "restrictedmail_tokens_active", []string{"list", "board@example.org"}},
		{0, "restrictedmail_recipients_pending", nil},
		{1, "restrictedmail_config_reloads_total", []string{"result", "ok"}},
		{1, "restrictedmail_config_reloads_total", []string{"result", "refused"}},
	} {
		if got := after.Get(c.name, c.labels...) - before.Get(c.name, c.labels...); got != c.delta {
			t.Errorf("%s changed by %v, want %v", promtext.Key(c.name, c.labels...), got, c.delta)
		}
	}
	if after.Get("restrictedmail_store_up") != 1 || !after.Has("go_goroutines") || !after.Has("process_resident_memory_bytes") {
		t.Errorf("store_up %v; Go and process collectors present: %v %v", after.Get("restrictedmail_store_up"), after.Has("go_goroutines"), after.Has("process_resident_memory_bytes"))
	}
	for _, k := range []string{"relay_errors_total", "milter_verdicts_total{reason=\"other\"}"} {
		for s, v := range after {
			if strings.Contains(s, k) && v != 0 {
				t.Errorf("%s = %v, want 0", s, v)
			}
		}
	}
}

// TestReadyz: not ready once the store stops answering, and once
// shutdown has begun.
func TestReadyz(t *testing.T) {
	t.Parallel()
	d, _, _ := startOps(t)
	base := "http://" + d.HTTPAddr().String()
	d.stopping.Store(true)
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while stopping: %d %q", code, body)
	}
	d.stopping.Store(false)
	d.down.Add(1)
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "1 listener(s) stopped serving") {
		t.Errorf("/readyz with a stopped listener: %d %q", code, body)
	}
	d.down.Add(-1)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	if code, body := get(t, base+"/nope"); code != 404 {
		t.Errorf("/nope: %d %q", code, body)
	}
}

// fakeListener hands out connections with chosen remote addresses.
type fakeListener struct {
	net.Listener
	conns chan net.Conn
}

func (l *fakeListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func TestAllowOnly(t *testing.T) {
	t.Parallel()
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	nets := []config.NetworkSpec{netip.MustParsePrefix("192.0.2.0/24")}
	// The listener drops the stranger and hands out the next allowed client.
	fl := &fakeListener{conns: make(chan net.Conn, 2)}
	stranger, _ := net.Pipe()
	friend, _ := net.Pipe()
	fl.conns <- addrConn{stranger, tcp("198.51.100.1:1")}
	fl.conns <- addrConn{friend, tcp("192.0.2.9:1")}
	close(fl.conns)
	ln := allowOnly(fl, func() []config.NetworkSpec { return nets }, slog.New(slog.DiscardHandler))
	c, err := ln.Accept()
	if err != nil || c.RemoteAddr().String() != "192.0.2.9:1" {
		t.Fatalf("Accept = %v, %v; want the allowed client", c, err)
	}
	if _, err := stranger.Write([]byte("x")); err == nil {
		t.Errorf("the refused connection is still open")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after the last: %v", err)
	}
}

// TestReloadKeepsRestartOnlySettings: a reload that changes what only a
// restart can apply keeps the values in force, says so once per key, and
// applies the rest.
func TestReloadKeepsRestartOnlySettings(t *testing.T) {
	t.Parallel()
	d, conf, _ := startOps(t)
	old := d.Config()
	doc, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.NewReplacer(
		`path = "state.db"`, `path = "other.db"`,
		"[milter]\nlisten = \"inet:127.0.0.1:0\"", "[milter]\nlisten = \"inet:127.0.0.1:0\"\nsocket_mode = \"0600\"",
		"[lmtp]\nlisten = \"inet:127.0.0.1:0\"", "[lmtp]\nlisten = \"inet:127.0.0.1:1\"\nmax_recipients = 7\nread_timeout = \"1m\"\nsocket_mode = \"0640\"\nsocket_group = \"mail\"",
		`name = "Board"`, `name = "Renamed Board"`,
	).Replace(string(doc))
	cfg, problems := config.Parse([]byte(changed), conf)
	if cfg == nil {
		t.Fatal(problems.Error())
	}
	warnings, err := d.Reload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// One warning per key, in the order of the file's sections; the spool
	// directory follows the store that is kept, so it is not reported.
	keys := []string{"store.path", "milter.socket_mode", "lmtp.listen", "lmtp.socket_mode", "lmtp.socket_group", "lmtp.max_recipients", "lmtp.read_timeout"}
	if len(warnings) != len(keys) {
		t.Errorf("warnings %q, want one for each of %q", warnings, keys)
	} else {
		for i, key := range keys {
			if !strings.HasPrefix(warnings[i], key+" changed from ") || !strings.Contains(warnings[i], "; restart to apply it (keeping ") {
				t.Errorf("warning %d = %q, want one for %s", i, warnings[i], key)
			}
		}
	}
	if want := `lmtp.socket_mode changed from 0660 to 0640; restart to apply it (keeping 0660)`; !strings.Contains(strings.Join(warnings, "\n")+"\n", want+"\n") {
		t.Errorf("warnings %q, want %q", warnings, want)
	}
	kept := func(now *config.Config) {
		t.Helper()
		if now.Store.Path != old.Store.Path || now.SpoolDir() != old.SpoolDir() ||
			now.LMTP.Listen != old.LMTP.Listen || now.LMTP.Addr != old.LMTP.Addr ||
			now.LMTP.MaxRecipients != old.LMTP.MaxRecipients || now.LMTP.ReadTimeout != old.LMTP.ReadTimeout ||
			now.LMTP.SocketMode != old.LMTP.SocketMode || now.LMTP.SocketGroup != old.LMTP.SocketGroup ||
			now.Milter.SocketMode != old.Milter.SocketMode {
			t.Errorf("restart-only settings changed in the configuration in force: %+v %+v", now.Store, now.LMTP)
		}
		if now.Lists[0].Name != "Renamed Board" {
			t.Errorf("the list name was not reloaded: %q", now.Lists[0].Name)
		}
	}
	kept(d.Config())

	// SIGHUP's path (ReloadFile) keeps the same settings.
	if err := os.WriteFile(conf, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.ReloadFile(conf); err != nil {
		t.Fatal(err)
	}
	kept(d.Config())
}
