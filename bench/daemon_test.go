//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// Addresses shared by every scenario.
const (
	author     = "alice@example.net"
	bounceAddr = "board-bounces@example.org"
	prefix     = "RMTOKEN"
)

// buildDaemon builds restrictedmail from the current tree into dir. Other
// engineers may be half-way through an edit: a failed build is retried for
// a while before the benchmark gives up.
func buildDaemon(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "restrictedmail")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := exec.Command("go", "build", "-o", bin, "../cmd/restrictedmail").CombinedOutput()
		if err == nil {
			return bin
		}
		if time.Now().After(deadline) {
			t.Fatalf("building restrictedmail: %v\n%s", err, out)
		}
		t.Logf("building restrictedmail failed (retrying in 20s; the tree may be mid-edit): %v\n%s", err, out)
		time.Sleep(20 * time.Second) // waiting for people, not for a condition in this program
	}
}

// list is one [[lists]] entry of a daemon configuration.
type list struct {
	addr    string
	members []string // written to a recipients_file
}

// daemonConf is what differs between the daemons of the scenarios.
type daemonConf struct {
	relay string // host:port of the outbound relay (a sink)
	lists []list
	api   string // host:port of [api] listen; "" leaves the API off (scenario 6)
	// storeURL, when set, is a PostgreSQL store instead of SQLite
	// (scenario 7).
	storeURL string
	// plainSender sends the copies from the plain bounce address, without
	// the delivery's tag (recipient_delimiter = ""): scenario 3's baseline
	// for the tagged envelope senders.
	plainSender bool
}

// daemonProc is a running `restrictedmail serve`.
type daemonProc struct {
	t          *testing.T
	e          *env
	dir        string
	db         string // SQLite file, or PostgreSQL URL when pg
	pg         bool
	milterAddr string
	lmtpAddr   string
	cmd        *exec.Cmd
	logFile    string
	started    chan struct{} // closed at "restrictedmail started"
	exited     chan struct{} // closed when the process has ended
	exitErr    error
	stopped    bool
}

// startDaemon writes a configuration for dc and starts the daemon binary
// on fresh loopback ports and a fresh store. It is stopped when t ends.
func (e *env) startDaemon(t *testing.T, dc daemonConf) *daemonProc {
	t.Helper()
	dir, err := os.MkdirTemp(e.dir, "daemon-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{t: t, e: e, dir: dir, db: filepath.Join(dir, "state.db"), logFile: filepath.Join(dir, "daemon.log"),
		milterAddr: freeAddr(t), lmtpAddr: freeAddr(t),
		started: make(chan struct{}), exited: make(chan struct{})}
	if dc.storeURL != "" {
		d.db, d.pg = dc.storeURL, true
	}
	conf := writeConfig(t, e, dir, dc, d.milterAddr, d.lmtpAddr)
	log, err := os.Create(d.logFile)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(e.binary, "serve", "--config", conf)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout = log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go d.readLog(stderr, log)
	t.Cleanup(d.stop)
	select {
	case <-d.started:
	case <-d.exited:
		t.Fatalf("restrictedmail exited at start (%v):\n%s", d.exitErr, d.logTail())
	case <-time.After(60 * time.Second):
		t.Fatalf("restrictedmail did not start within 60s:\n%s", d.logTail())
	}
	return d
}

// readLog copies the daemon's log to its file and notices the start.
func (d *daemonProc) readLog(r io.Reader, log *os.File) {
	defer close(d.exited)
	defer log.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := false
	for sc.Scan() {
		log.Write(append(sc.Bytes(), '\n'))
		if !seen && strings.Contains(sc.Text(), "restrictedmail started") {
			seen = true
			close(d.started)
		}
	}
	io.Copy(log, r)
	d.exitErr = d.cmd.Wait()
}

// writeConfig writes the daemon's configuration for dc into dir (store,
// spool and recipients files beside it) and returns its path.
func writeConfig(t testing.TB, e *env, dir string, dc daemonConf, milterAddr, lmtpAddr string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "hostname = \"mx.example.org\"\n")
	if dc.plainSender {
		b.WriteString("recipient_delimiter = \"\"\n")
	}
	fmt.Fprintf(&b, "[log]\nlevel = \"info\"\n")
	if dc.storeURL != "" {
		fmt.Fprintf(&b, "[store]\nurl = %q\n", dc.storeURL)
	} else {
		fmt.Fprintf(&b, "[store]\npath = %q\n", filepath.Join(dir, "state.db"))
	}
	fmt.Fprintf(&b, "[milter]\nlisten = \"inet:%s\"\n", milterAddr)
	// The spool beside the store file, also with PostgreSQL.
	fmt.Fprintf(&b, "[lmtp]\nlisten = \"inet:%s\"\nspool_dir = %q\n", lmtpAddr, filepath.Join(dir, "spool"))
	// The relay settings are the shipped defaults (50 recipients per
	// transaction, 4 connections), which BENCHMARKS.md states.
	fmt.Fprintf(&b, "[relay]\naddress = %q\ntls = \"none\"\n", dc.relay)
	fmt.Fprintf(&b, "[tokens]\nprefix = %q\n", prefix)
	if dc.api != "" {
		fmt.Fprintf(&b, "[api]\nlisten = \"inet:%s\"\n", dc.api)
	}
	fmt.Fprintf(&b, "[[dkim]]\ndomain = \"example.org\"\nselector = \"rm1\"\nprivate_key_file = %q\n", e.key.Config.PrivateKeyFile)
	for i, l := range dc.lists {
		file := filepath.Join(dir, fmt.Sprintf("members-%d.txt", i))
		if err := os.WriteFile(file, []byte(strings.Join(l.members, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "[[lists]]\naddress = %q\nname = \"Example Board\"\nbounce_address = %q\nrecipients_file = %q\n",
			l.addr, bounceAddr, file)
	}
	conf := filepath.Join(dir, "restrictedmail.toml")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf
}

// issue stores n single-use tokens for list straight in the daemon's store
// (the daemon runs; SQLite's WAL lets both write) and returns them.
func (d *daemonProc) issue(t *testing.T, listAddr string, n int) []string {
	if d.pg {
		return issueTokensWith(t, func() (*store.DB, error) {
			return store.OpenPostgres(context.Background(), store.PostgresOptions{URL: d.db})
		}, listAddr, n)
	}
	return issueTokens(t, d.db, listAddr, n)
}

func issueTokens(t testing.TB, dbPath, listAddr string, n int) []string {
	return issueTokensWith(t, func() (*store.DB, error) { return store.Open(context.Background(), dbPath) }, listAddr, n)
}

func issueTokensWith(t testing.TB, open func() (*store.DB, error), listAddr string, n int) []string {
	t.Helper()
	db, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	toks := make([]string, n)
	for i := range toks {
		toks[i] = token.Generate()
		rec := token.Record{ID: token.NewID(), Hash: token.HashOf(toks[i]), List: listAddr,
			Created: time.Now().UTC(), UsesAllowed: 1}
		if err := db.AddToken(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	return toks
}

var vmHWM = regexp.MustCompile(`VmHWM:\s+(\d+) kB`)

// peakRSS is the daemon's peak resident set size (VmHWM) in bytes.
func (d *daemonProc) peakRSS(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	m := vmHWM.FindSubmatch(data)
	if m == nil {
		t.Fatal("no VmHWM in /proc/PID/status")
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// stop ends the daemon with SIGTERM (SIGKILL after 30s) and removes its
// directory. A daemon that does not exit 0 after its work is done is a bug
// of the daemon, not of what was measured: it is logged and reported in
// BENCHMARKS.md's notes, but does not void the measurements.
func (d *daemonProc) stop() {
	if d.stopped {
		return
	}
	d.stopped = true
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.exitErr != nil {
			d.t.Logf("restrictedmail exited with %v after SIGTERM:\n%s", d.exitErr, d.logTail())
			d.e.badExit(fmt.Sprintf("%v: %s", d.exitErr, firstPanicLine(d.logFile)))
		}
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("restrictedmail did not exit within 30s of SIGTERM")
	}
	if d.t.Failed() {
		d.t.Logf("restrictedmail log (%s):\n%s", d.logFile, d.logTail())
	}
	os.RemoveAll(d.dir)
}

// logTail is the end of the daemon's log, for failure messages.
func (d *daemonProc) logTail() string {
	b, _ := os.ReadFile(d.logFile)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newKey is the list domain's DKIM key: RSA 2048, as deployed.
func newKey(t *testing.T) dkimtest.Key {
	return dkimtest.NewKey(t, "rsa", "example.org", "rm1")
}

// firstPanicLine is the "panic: ..." line of the daemon's log, if any.
func firstPanicLine(logFile string) string {
	b, _ := os.ReadFile(logFile)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "panic:") {
			return l
		}
	}
	return "no panic in the log"
}
