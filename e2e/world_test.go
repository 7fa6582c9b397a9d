// Package e2e tests restrictedmail end to end: the real binary (`serve` as a
// subprocess, stopped with SIGTERM), a real private Postfix
// (internal/postfixtest) sending to it through smtpd_milters and an LMTP
// transport, and capture SMTP servers (internal/testsmtp) standing in for
// the outbound relay and for the rest of the Internet.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// binary is the restrictedmail built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "restrictedmail-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "restrictedmail")
	if out, err := exec.Command("go", "build", "-o", binary, "../cmd/restrictedmail").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building restrictedmail: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// worldOpts shape one end-to-end setup.
type worldOpts struct {
	milter        bool     // Postfix consults the milter
	members       []string // board@example.org's recipients
	membersFile   int      // that many generated recipients in a recipients_file
	prefix        string   // tokens.prefix; default RMTOKEN
	relay         testsmtp.Options
	relayTLS      string // relay.tls; default none
	relayAuth     bool   // relay.username/password_file from relay Options
	maxRecipients int
	connections   int
	reinject      bool // the relay is Postfix's reinjection smtpd, not the capture server
	unix          bool // milter and LMTP on unix sockets instead of loopback ports

	// store is the [store] table's keys (TOML lines), for several hosts
	// on one store (hosts_test.go); "": path = the world's own state.db.
	store string
	// extra is TOML appended to the configuration (e.g. an [http] table).
	extra string
	// set are keys of the tables the world writes itself, as
	// "table.key" → TOML value, e.g. "relay.command_timeout": `"2s"`
	// (faults_test.go).
	set map[string]string
	// milterDefault is Postfix's milter_default_action ("" leaves
	// postfixtest's tempfail); etc/postfix/main.cf ships "accept".
	milterDefault string
	// mainCF are extra main.cf parameters for Postfix (myorigin,
	// milter_protocol, ...).
	mainCF map[string]string
	// lists are more restricted addresses (no members but the author),
	// routed to the endpoint like board@.
	lists []string
	// routes are addresses routed to the endpoint that are no list (a
	// stale transport_maps entry).
	routes []string
	// bracketTransport writes the transport as lmtp:[127.0.0.1]:PORT, as
	// the reference deployment does, instead of lmtp:inet:127.0.0.1:PORT.
	bracketTransport bool
	// storeURL is a PostgreSQL store instead of the SQLite file w.db
	// (postgres_test.go).
	storeURL string
}

type world struct {
	t     *testing.T
	dir   string
	conf  string
	db    string           // store path
	relay *testsmtp.Server // restrictedmail's outbound relay
	sink  *testsmtp.Server // Postfix's relayhost: DSNs, ordinary mail
	pf    *postfixtest.Instance
	rm    *daemonProc
	key   dkimtest.Key
	opts  worldOpts
}

const (
	list   = "board@example.org"
	bounce = "board-bounces@example.org"
	author = "alice@example.net"
)

var defaultMembers = []string{"m1@example.net", "m2@example.com", "m3@example.com"}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	postfixtest.Require(t)
	if o.members == nil && o.membersFile == 0 {
		o.members = defaultMembers
	}
	if o.prefix == "" {
		o.prefix = "RMTOKEN"
	}
	if o.relayTLS == "" {
		o.relayTLS = "none"
	}
	w := &world{t: t, dir: t.TempDir(), opts: o}
	w.key = dkimtest.NewKey(t, "rsa", "example.org", "rm1")
	w.sink = testsmtp.Start(t, testsmtp.Options{SMTPUTF8: true})
	if !o.reinject {
		w.relay = testsmtp.Start(t, o.relay)
	}
	w.db = filepath.Join(w.dir, "state.db")
	// Postfix needs the daemon's ports and the daemon may need Postfix's
	// reinjection port: start the daemon on fixed free ports first.
	milterAt, lmtpAt := "inet:127.0.0.1:"+freePort(t), "inet:127.0.0.1:"+freePort(t)
	if o.unix {
		dir := socketDir(t)
		milterAt, lmtpAt = "unix:"+filepath.Join(dir, "milter.sock"), "unix:"+filepath.Join(dir, "lmtp.sock")
	}
	transport := "lmtp:" + lmtpAt
	if o.bracketTransport && strings.HasPrefix(lmtpAt, "inet:") {
		host, p, _ := net.SplitHostPort(strings.TrimPrefix(lmtpAt, "inet:"))
		transport = "lmtp:[" + host + "]:" + p
	}
	// The lists' bounce addresses reach the endpoint too: the copies'
	// bounces come back to them (README: bounce routing).
	routes := map[string]string{list: transport, "events@example.org": transport, bounce: transport, "events-bounces@example.org": transport}
	for _, l := range append(append([]string(nil), o.lists...), o.routes...) {
		routes[l] = transport
	}
	for i := range o.lists {
		routes[fmt.Sprintf("list%d-bounces@example.org", i)] = transport
	}
	popts := postfixtest.Options{
		Transport:    routes,
		MainCF:       o.mainCF,
		RelayHost:    "[127.0.0.1]:" + port(w.sink.Addr()),
		RelayDomains: []string{"example.org"},
		Reinject:     o.reinject,
	}
	if o.milter {
		popts.Milter = milterAt
	}
	popts.MilterDefaultAction = o.milterDefault
	w.pf = postfixtest.Start(t, popts)
	relayAddr := ""
	if o.reinject {
		relayAddr = w.pf.ReinjectAddr()
	} else {
		relayAddr = w.relay.Addr()
	}
	w.conf = w.writeConfig(milterAt, lmtpAt, relayAddr)
	w.rm = startDaemon(t, w.conf)
	return w
}

func (w *world) writeConfig(milterAt, lmtpAt, relayAddr string) string {
	t := w.t
	o := w.opts
	var b strings.Builder
	storeKeys := fmt.Sprintf("path = %q", w.db)
	switch {
	case o.store != "":
		storeKeys = o.store
	case o.storeURL != "":
		storeKeys = fmt.Sprintf("url = %q\nconnect_timeout = \"2s\"", o.storeURL)
	}
	fmt.Fprintf(&b, "hostname = \"mx.example.org\"\n[log]\nlevel = \"debug\"\n[store]\n%s\n", storeKeys)
	// Postfix's smtpd and lmtp clients run as postfix: they reach unix
	// sockets through the socket's group.
	fmt.Fprintf(&b, "[milter]\nlisten = %q\nsocket_group = \"postfix\"\n[lmtp]\nlisten = %q\nsocket_group = \"postfix\"\nshutdown_timeout = \"20s\"\n", milterAt, lmtpAt)
	if o.storeURL != "" { // no store file for the spool to go beside
		fmt.Fprintf(&b, "spool_dir = %q\n", filepath.Join(w.dir, "spool"))
	}
	fmt.Fprintf(&b, "[relay]\naddress = %q\ntls = %q\n", relayAddr, o.relayTLS)
	if o.maxRecipients > 0 {
		fmt.Fprintf(&b, "max_recipients = %d\n", o.maxRecipients)
	}
	if o.connections > 0 {
		fmt.Fprintf(&b, "connections = %d\n", o.connections)
	}
	if o.relay.TLS != testsmtp.NoTLS {
		fmt.Fprintf(&b, "ca_file = %q\n", w.relay.CAFile())
	}
	if o.relayAuth {
		pw := filepath.Join(w.dir, "relay.password")
		if err := os.WriteFile(pw, []byte(o.relay.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "username = %q\npassword_file = %q\n", o.relay.Username, pw)
	}
	// serve checks Postfix's configuration at start: the private one.
	fmt.Fprintf(&b, "[postfix]\nconfig_directory = %q\n", filepath.Join(w.pf.Dir(), "etc"))
	fmt.Fprintf(&b, "[tokens]\nprefix = %q\n", o.prefix)
	fmt.Fprintf(&b, "[[dkim]]\ndomain = \"example.org\"\nselector = \"rm1\"\nprivate_key_file = %q\n", w.key.Config.PrivateKeyFile)
	fmt.Fprintf(&b, "[[lists]]\naddress = %q\nname = \"Example Board\"\nbounce_address = %q\n", list, bounce)
	if len(o.members) > 0 {
		fmt.Fprintf(&b, "recipients = [%s]\n", quoteAll(o.members))
	}
	if o.membersFile > 0 {
		file := filepath.Join(w.dir, "members.txt")
		if err := os.WriteFile(file, []byte(strings.Join(generated(o.membersFile), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "recipients_file = %q\n", file)
	}
	fmt.Fprintf(&b, "[[lists]]\naddress = \"events@example.org\"\nname = \"Events\"\nbounce_address = \"events-bounces@example.org\"\n")
	for i, l := range o.lists {
		fmt.Fprintf(&b, "[[lists]]\naddress = %q\nrecipients = [%q]\nbounce_address = \"list%d-bounces@example.org\"\n", l, author, i)
	}
	b.WriteString(o.extra)
	conf := filepath.Join(w.dir, "restrictedmail.toml")
	if err := os.WriteFile(conf, []byte(setKeys(b.String(), o.set)), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// members returns every recipient of board@example.org.
func (w *world) members() []string {
	if w.opts.membersFile > 0 {
		return append(append([]string(nil), w.opts.members...), generated(w.opts.membersFile)...)
	}
	return w.opts.members
}

func generated(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("member%05d@example.com", i)
	}
	return out
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// openStore opens the daemon's store from the test, as another process
// (`restrictedmail token`) would.
func (w *world) openStore() (*store.DB, error) {
	if w.opts.storeURL != "" {
		return store.OpenPostgres(context.Background(), store.PostgresOptions{URL: w.opts.storeURL})
	}
	return store.Open(context.Background(), w.db)
}

// issue stores a token record directly (so that tests can use LEGO's
// fixture token, "test_token") and returns the record's id.
func (w *world) issue(tok string, mod func(*token.Record)) string {
	w.t.Helper()
	db, err := w.openStore()
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	rec := token.Record{ID: token.NewID(), Hash: token.HashOf(tok), List: list, Created: time.Now().UTC(), UsesAllowed: 1}
	if mod != nil {
		mod(&rec)
	}
	if err := db.AddToken(context.Background(), rec); err != nil {
		w.t.Fatal(err)
	}
	return rec.ID
}

// issueCLI issues a token with `restrictedmail token issue --out`, as an
// administrator would, and returns the token and the token file's content.
func (w *world) issueCLI(args ...string) (string, []byte) {
	w.t.Helper()
	file := filepath.Join(w.dir, "token-"+token.NewID()+".txt")
	cmd := exec.Command(binary, append([]string{"token", "issue", "--config", w.conf, "--list", list, "--out", file}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("token issue: %v\n%s", err, out)
	}
	tok, _, _ := strings.Cut(string(out), "\n")
	content, err := os.ReadFile(file)
	if err != nil {
		w.t.Fatal(err)
	}
	return tok, content
}

func (w *world) tokenRecord(id string) token.Record {
	w.t.Helper()
	db, err := store.Open(context.Background(), w.db)
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	rec, err := db.TokenByID(context.Background(), id)
	if err != nil {
		w.t.Fatal(err)
	}
	return rec
}

// submit sends a message into Postfix.
func (w *world) submit(from string, rcpts []string, msg []byte) postfixtest.SubmitResult {
	w.t.Helper()
	return postfixtest.Submit(w.pf.SMTPAddr(), from, rcpts, msg)
}

// exactlyOnce checks that every one of want was delivered by the relay
// exactly once and nobody else was.
func exactlyOnce(t *testing.T, got []string, want []string) {
	t.Helper()
	count := map[string]int{}
	for _, r := range got {
		count[strings.ToLower(r)]++
	}
	for _, r := range want {
		if n := count[strings.ToLower(r)]; n != 1 {
			t.Errorf("%s received %d copies, want 1", r, n)
		}
		delete(count, strings.ToLower(r))
	}
	for r, n := range count {
		t.Errorf("%s (not a member) received %d copies", r, n)
	}
}

// socketDir is a directory for unix sockets that the postfix user can
// enter, with a path short enough for a socket (107 bytes).
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rme2e")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := listenLoopback()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return port(ln.Addr().String())
}

func port(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	return addr[i+1:]
}

// daemonProc is a running `restrictedmail serve`.
type daemonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{} // closed when the process has ended
	err    error         // its exit status, once exited is closed
	once   sync.Once
}

func startDaemon(t *testing.T, conf string) *daemonProc {
	t.Helper()
	p := &daemonProc{t: t, log: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, "serve", "--config", conf)
	p.cmd.Stderr = p.log
	p.cmd.Stdout = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
		p.log.Write(nil) // wake waiters
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("restrictedmail log:\n%s", p.log.String())
		}
	})
	p.waitLog("restrictedmail started", 20*time.Second)
	return p
}

// waitLog waits until the daemon's log contains s.
func (p *daemonProc) waitLog(s string, timeout time.Duration) {
	p.t.Helper()
	if !p.log.waitFor(s, timeout, p.exited) {
		p.t.Fatalf("restrictedmail did not log %q within %s; log:\n%s", s, timeout, p.log.String())
	}
}

// stop sends SIGTERM and checks that the daemon exits 0 (issue: graceful
// shutdown), at most once.
func (p *daemonProc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			if p.err != nil {
				p.t.Errorf("restrictedmail exited with %v after SIGTERM, want 0", p.err)
			}
		case <-time.After(60 * time.Second):
			_ = p.cmd.Process.Kill()
			p.t.Errorf("restrictedmail did not exit within 60s of SIGTERM")
		}
	})
}

// peakRSS returns the daemon's peak resident set size (VmHWM) in bytes.
func (p *daemonProc) peakRSS() int64 {
	p.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		p.t.Fatalf("no VmHWM in /proc status")
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// syncBuffer is a log buffer written by the daemon's pipe and read by the
// test, with a condition variable for waits.
type syncBuffer struct {
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cond == nil {
		b.cond = sync.NewCond(&b.mu)
	}
	n, err := b.buf.Write(p)
	b.cond.Broadcast()
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer holds s, the process ends, or timeout.
func (b *syncBuffer) waitFor(s string, timeout time.Duration, exited <-chan struct{}) bool {
	deadline := time.Now().Add(timeout)
	b.mu.Lock()
	if b.cond == nil {
		b.cond = sync.NewCond(&b.mu)
	}
	stop := time.AfterFunc(timeout, func() { b.mu.Lock(); b.cond.Broadcast(); b.mu.Unlock() })
	defer stop.Stop()
	defer b.mu.Unlock()
	for !strings.Contains(b.buf.String(), s) {
		if time.Now().After(deadline) || isClosed(exited) {
			return false
		}
		b.cond.Wait()
	}
	return true
}

// lines returns the log lines that contain all of the given substrings.
func (b *syncBuffer) lines(subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue next
			}
		}
		out = append(out, sc.Text())
	}
	return out
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func listenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
