// Package pgtest is a test harness: a real, private, throw-away PostgreSQL
// cluster (initdb + pg_ctl in a temporary directory, on a loopback port),
// and a fresh database in it for each test.
//
// A test binary shares one cluster (Shared), started on first use and
// removed by Main when the tests end; a test that stops and restarts
// PostgreSQL on purpose starts its own (New). initdb refuses to run as
// root, so as root the cluster runs as the `postgres` user (runuser).
//
// A missing PostgreSQL fails the test under CI=true and skips it
// otherwise, both with the command that installs it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// InstallHint is how to get PostgreSQL on Debian.
const InstallHint = "apt-get install -y postgresql postgresql-client"

// Cluster is one private PostgreSQL cluster.
type Cluster struct {
	bin  string // directory of initdb, pg_ctl, postgres
	dir  string // everything: data, socket, log
	port int
	as   string // user to run as ("" for the current one)
	dbs  atomic.Int64
	mu   sync.Mutex // serialises Stop and Start
}

// shared is the cluster of this test binary. It is package state only
// because a test binary is one process with one cluster; Main removes it.
var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Main runs the tests and then removes the shared cluster, if any test
// started it: `func TestMain(m *testing.M) { pgtest.Main(m) }`.
func Main(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		shared.c.remove()
	}
	os.Exit(code)
}

// Require fails (CI=true) or skips the test when PostgreSQL is not
// installed, and returns the directory of its programs.
func Require(t testing.TB) string {
	t.Helper()
	bin, err := findBin()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: %v; install with:\n  %s", err, InstallHint)
		}
		t.Skipf("pgtest: %v; install with:\n  %s", err, InstallHint)
	}
	return bin
}

// findBin finds PostgreSQL's server programs: on PATH, or Debian's
// /usr/lib/postgresql/VERSION/bin (the newest).
func findBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL's initdb and pg_ctl not found")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Shared returns the test binary's cluster, starting it on first use.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	bin := Require(t)
	shared.once.Do(func() { shared.c, shared.err = start(bin) })
	if shared.err != nil {
		t.Fatalf("pgtest: %v", shared.err)
	}
	return shared.c
}

// New starts a cluster of the test's own, removed when it ends: for
// tests that stop and restart PostgreSQL.
func New(t testing.TB) *Cluster {
	t.Helper()
	c, err := start(Require(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(c.remove)
	return c
}

func start(bin string) (*Cluster, error) {
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		c.as = "postgres"
		if _, err := user.Lookup(c.as); err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user (%v); install with: %s", err, InstallHint)
		}
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c.dir = dir
	if err := c.chown(dir); err != nil {
		c.remove()
		return nil, err
	}
	if out, err := c.run("initdb", "-D", c.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		c.remove()
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// A port that was free a moment ago; another process may take it in
	// between, so a failed start tries another.
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			c.remove()
			return nil, err
		}
		if err = c.Start(); err == nil || attempt == 2 {
			break
		}
	}
	if err != nil {
		c.remove()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

func (c *Cluster) chown(path string) error {
	if c.as == "" {
		return nil
	}
	u, err := user.Lookup(c.as)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// run runs one of PostgreSQL's programs as the cluster's user.
func (c *Cluster) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, prog)
	var cmd *exec.Cmd
	if c.as != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.as, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

// Start starts (or restarts after Stop) the server and waits until it
// accepts connections. fsync is off (a test's data need not survive the
// machine), but synchronous_commit stays on: Stop is a crash of the
// server, and what it acknowledged must be there after Start.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200",
		c.port, c.dir)
	if out, err := c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the server at once (connections are cut, as by a crash of
// the database host).
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, err := c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

func (c *Cluster) remove() {
	_, _ = c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop")
	os.RemoveAll(c.dir)
}

// Port is the server's loopback TCP port.
func (c *Cluster) Port() int { return c.port }

// URL returns the URL of the database name.
func (c *Cluster) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

// NewDB creates a fresh, empty database for the test, dropped when it
// ends, and returns its URL.
func (c *Cluster) NewDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", c.dbs.Add(1))
	if err := c.exec(fmt.Sprintf("CREATE DATABASE %s", name)); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.exec(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)) })
	return c.URL(name)
}

// exec runs one statement in the maintenance database.
func (c *Cluster) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
