// Package postfixtest runs a real, private Postfix for end-to-end tests.
//
// Start writes a main.cf and master.cf into a fresh directory, starts a
// Postfix master that listens only on loopback ports chosen for the test,
// and stops it and removes its queue when the test ends. The instance
// relays everything to Options.RelayHost (typically a capture server in the
// test), hands the addresses in Options.Transport to their transports (the
// LMTP endpoint under test), and can put a milter in front of its smtpd.
// Deferred mail is retried only when the test calls Flush, so what a test
// sees is what it caused.
//
// Postfix needs root (it switches to the postfix user) and the Debian
// packages named by Require. Instances are independent of each other and of
// a system Postfix: each has its own config, queue, data directory and log,
// so tests may run many in parallel.
//
// Postfix logs to the instance's maillog (there is no syslog); Log and
// WaitLog read it, and a failed test gets its tail in the test output.
package postfixtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// installHint is how to get every tool that the end-to-end tests use.
const installHint = "apt-get install -y postfix swaks miltertest python3-dkim"

// requiredTools are the commands that Require checks for.
var requiredTools = []string{"postfix", "postqueue", "postsuper", "postcat", "postconf", "smtp-sink", "swaks"}

// Require fails the test, with the command that installs them, when a tool
// that Postfix end-to-end tests need is missing. Missing tools are a broken
// test environment, not a reason to skip.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	for _, name := range requiredTools {
		if _, err := lookTool(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("postfixtest: missing %s; install with:\n  %s", strings.Join(missing, ", "), installHint)
	}
}

// lookTool finds a tool on PATH or in the sbin directories, which a
// non-login PATH may lack.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// Options configure one instance. The zero value is a working relay for
// example.org that defers everything (there is no relay host).
type Options struct {
	// Milter, when set, is added to smtpd_milters, e.g. "inet:127.0.0.1:PORT".
	Milter string
	// MilterDefaultAction is milter_default_action (default "tempfail").
	MilterDefaultAction string
	// Transport maps recipient addresses (or domains) to Postfix transports,
	// written as an inline: transport_maps, e.g.
	// {"board@example.org": "lmtp:inet:127.0.0.1:PORT"}. Postfix strips a
	// +subaddress before the lookup, so board+TOKEN@example.org matches too.
	Transport map[string]string
	// RelayHost is where all other mail goes ("[127.0.0.1]:PORT"),
	// typically a capture server; DSNs to senders outside RelayDomains go
	// there too. When empty, such mail stays deferred ("Options.RelayHost
	// is not set") instead of being looked up in DNS.
	RelayHost string
	// RelayDomains are the domains Postfix accepts mail for from anyone
	// (default ["example.org"]). Loopback clients may relay anywhere.
	RelayDomains []string
	// Reinject adds a second smtpd on its own loopback port, per Postfix's
	// FILTER_README (no content_filter, no milters, no checks), so that a
	// filter can hand mail back into Postfix; Instance.ReinjectAddr returns it.
	Reinject bool
	// MainCF holds extra main.cf parameters; they override the defaults.
	MainCF map[string]string
}

// Instance is a running Postfix. Its methods that take a testing.TB fail
// that test on error and must be called from its goroutine.
type Instance struct {
	l            layout
	smtpAddr     string
	reinjectAddr string
	bin          tools

	masterPID int
	watchdog  *watchdog
	stopOnce  sync.Once
}

// tools are the absolute paths of the Postfix programs an instance runs.
type tools struct {
	postfix, postqueue, postsuper, postcat, postconf, master string
	script                                                   string // util-linux script(1)
}

// startAttempts bounds the retries when a chosen port is taken by someone
// else between choosing it and Postfix binding it.
const startAttempts = 5

// Start creates, checks and starts an instance for t. It is stopped and its
// directory (queue included) removed when t ends. A failed start fails t
// with Postfix's own messages.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	Require(t)
	if os.Geteuid() != 0 {
		t.Fatalf("postfixtest: Postfix must be started as root (it drops to the postfix user); run the tests as root")
	}
	bin, err := findTools()
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}

	root, err := makeRoot()
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	i := &Instance{l: newLayout(root), bin: bin}
	// The watchdog stops Postfix if this test binary dies without running
	// its cleanups (test timeout, panic in another goroutine, SIGKILL).
	i.watchdog, err = startWatchdog(bin, i.l)
	if err != nil {
		os.RemoveAll(root)
		t.Fatalf("postfixtest: %v", err)
	}
	t.Cleanup(func() { i.stop(t) })

	if err := i.makeDirs(); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	// A name unique to the instance: see myhostname in mainCF.
	hostname := "mx-" + strings.TrimPrefix(filepath.Base(root), "postfixtest-") + ".postfixtest.test"
	main, err := mainCF(i.l, hostname, opts)
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	if err := writeConfig(filepath.Join(i.l.configDir, "main.cf"), main); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		p, err := pickPorts(opts.Reinject)
		if err != nil {
			t.Fatalf("postfixtest: choosing ports: %v", err)
		}
		if err := writeConfig(filepath.Join(i.l.configDir, "master.cf"), masterCF(p)); err != nil {
			t.Fatalf("postfixtest: %v", err)
		}
		if attempt == 1 && len(opts.MainCF) > 0 {
			i.checkMainCF(t)
		}
		lastErr = i.start()
		if lastErr == nil {
			i.smtpAddr = hostPort(p.smtp)
			if p.reinject != 0 {
				i.reinjectAddr = hostPort(p.reinject)
			}
			return i
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	t.Fatalf("postfixtest: starting Postfix in %s: %v", i.l.root, lastErr)
	return nil
}

func findTools() (tools, error) {
	var b tools
	for _, x := range []struct {
		dst  *string
		name string
	}{{&b.postfix, "postfix"}, {&b.postqueue, "postqueue"}, {&b.postsuper, "postsuper"},
		{&b.postcat, "postcat"}, {&b.postconf, "postconf"}} {
		p, err := lookTool(x.name)
		if err != nil {
			return b, err
		}
		*x.dst = p
	}
	script, err := lookTool("script")
	if err != nil {
		return b, fmt.Errorf("%w (package bsdutils)", err)
	}
	b.script = script
	// The master binary answers "is this instance running?" (master -t)
	// without the shell script and sleeps of "postfix status/stop".
	out, err := exec.Command(b.postconf, "-d", "-h", "daemon_directory").CombinedOutput()
	if err != nil {
		return b, fmt.Errorf("postconf -d daemon_directory: %v: %s", err, out)
	}
	b.master = filepath.Join(strings.TrimSpace(string(out)), "master")
	return b, nil
}

// makeRoot creates the instance directory. Not t.TempDir: that is 0700 and
// nested in 0700 directories, which the postfix user cannot enter.
func makeRoot() (string, error) {
	base := os.TempDir()
	if len(base) > 64 {
		// Keep paths short: Postfix names sockets relative to the queue
		// directory, but its log lines and error messages quote them.
		base = "/tmp"
	}
	root, err := os.MkdirTemp(base, "postfixtest-")
	if err != nil {
		return "", fmt.Errorf("creating instance directory: %w", err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		os.RemoveAll(root)
		return "", fmt.Errorf("making %s enterable for the postfix user: %w", root, err)
	}
	return root, nil
}

// queueDirs are the queue subdirectories with their modes and groups, as
// in Postfix's postfix-files ($queue_directory/...); all belong to
// mail_owner except pid. TestLayoutMatchesPostfixCheck keeps this honest.
var queueDirs = []struct {
	name     string
	mode     os.FileMode
	postdrop bool // group setgid_group instead of root
}{
	{"active", 0o700, false}, {"bounce", 0o700, false}, {"corrupt", 0o700, false},
	{"defer", 0o700, false}, {"deferred", 0o700, false}, {"flush", 0o700, false},
	{"hold", 0o700, false}, {"incoming", 0o700, false}, {"private", 0o700, false},
	{"saved", 0o700, false}, {"trace", 0o700, false},
	{"maildrop", 0o730, true}, {"public", 0o710, true},
}

// makeDirs creates the config, queue and data directories with the owners
// and modes that "postfix check" (post-install create-missing) would give
// them. Running that script instead costs some sixty processes, 1-4 s on a
// busy two-core machine, for every instance.
func (i *Instance) makeDirs() error {
	u, err := user.Lookup("postfix")
	if err != nil {
		return fmt.Errorf("looking up mail_owner postfix (%s): %w", installHint, err)
	}
	g, err := user.LookupGroup("postdrop")
	if err != nil {
		return fmt.Errorf("looking up setgid_group postdrop (%s): %w", installHint, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	postdrop, _ := strconv.Atoi(g.Gid)

	mk := func(dir string, mode os.FileMode, uid, gid int) error {
		if err := os.Mkdir(dir, mode); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		// Chmod after Mkdir: the umask may have removed bits.
		if err := os.Chmod(dir, mode); err != nil {
			return err
		}
		return os.Chown(dir, uid, gid)
	}
	for _, dir := range []string{i.l.configDir, i.l.queueDir, filepath.Join(i.l.queueDir, "pid")} {
		if err := mk(dir, 0o755, 0, 0); err != nil {
			return err
		}
	}
	// master.lock lives here; the postfix user must own it.
	if err := mk(i.l.dataDir, 0o700, uid, gid); err != nil {
		return err
	}
	for _, d := range queueDirs {
		group := 0
		if d.postdrop {
			group = postdrop
		}
		if err := mk(filepath.Join(i.l.queueDir, d.name), d.mode, uid, group); err != nil {
			return err
		}
	}
	return nil
}

// writeConfig writes a Postfix configuration file, dated an hour ago.
// Postfix treats a file changed within the last second or two as "hot",
// perhaps still being edited, and every program that reads it (postfix,
// postconf, each daemon) dozes 300 ms at a time until it has cooled down:
// some 2 s per command for a freshly written main.cf.
func writeConfig(name, content string) error {
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		return err
	}
	past := time.Now().Add(-time.Hour)
	return os.Chtimes(name, past, past)
}

// pickPorts chooses free loopback ports. They are free when chosen, not
// when Postfix binds them; Start retries on errPortTaken.
func pickPorts(reinject bool) (ports, error) {
	n := 1
	if reinject {
		n = 2
	}
	var got []int
	for range n {
		// Held open until all are chosen, so that they differ.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return ports{}, err
		}
		defer ln.Close()
		got = append(got, ln.Addr().(*net.TCPAddr).Port)
	}
	p := ports{smtp: got[0]}
	if reinject {
		p.reinject = got[1]
	}
	return p, nil
}

// checkMainCF fails t when main.cf has a parameter that Postfix does not
// know: a misspelt Options.MainCF key would otherwise be silently ignored.
func (i *Instance) checkMainCF(t testing.TB) {
	t.Helper()
	cmd := i.command(i.bin.postconf, "-c", i.l.configDir, "-n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if _, err := cmd.Output(); err != nil {
		t.Fatalf("postfixtest: postconf -n: %v: %s", err, stderr.Bytes())
	}
	if bytes.Contains(stderr.Bytes(), []byte("unused parameter")) {
		t.Fatalf("postfixtest: main.cf has a parameter that Postfix does not know (misspelt Options.MainCF?):\n%s", stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Logf("postfixtest: postconf -n:\n%s", stderr.Bytes())
	}
}

var errPortTaken = errors.New("a listen port was taken by another process")

// start runs "postfix start", which returns once the master has bound its
// listeners (master -w), so the instance accepts connections on return.
func (i *Instance) start() error {
	// The checks that "postfix start" runs first (postfix check, ~60
	// processes) are redundant after makeDirs; this file is Postfix's own
	// way ("postfix quick-stop") to skip them once.
	if err := os.WriteFile(filepath.Join(i.l.queueDir, "quick-start"), nil, 0o644); err != nil {
		return err
	}
	logBefore := len(i.Log())
	// Postfix writes its errors to stderr only when stderr is a terminal;
	// otherwise they go to syslog, which a test machine may not have
	// (maillog_file catches only what is logged once postlogd can run).
	// script(1) gives "postfix start" a terminal.
	cmdline := shellQuote(i.bin.postfix) + " -c " + shellQuote(i.l.configDir) + " start"
	out, err := i.run(i.bin.script, "-qec", cmdline, "/dev/null")
	if err == nil {
		pid, perr := i.readMasterPID()
		if perr != nil {
			return fmt.Errorf("postfix start succeeded, but: %w%s", perr, i.logTail(20))
		}
		i.masterPID = pid
		return nil
	}
	logNow := i.Log()
	newLog := logNow[min(logBefore, len(logNow)):]
	err = fmt.Errorf("postfix start: %v\n%s\nmaillog:\n%s", err, bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n")), newLog)
	if strings.Contains(newLog, "Address already in use") {
		return fmt.Errorf("%w: %w", errPortTaken, err)
	}
	if !strings.Contains(newLog+string(out), "fatal:") {
		// Seen with a bad master.cf service: the background master's
		// error goes to syslog only.
		err = fmt.Errorf("%w\n(the reason went to syslog; strace -f -e trace=connect,sendto -s 300 %s -c %s -d shows it)",
			err, i.bin.master, i.l.configDir)
	}
	return err
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (i *Instance) readMasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(i.l.queueDir, "pid", "master.pid"))
	if err != nil {
		return 0, fmt.Errorf("reading master.pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parsing master.pid %q: %w", b, err)
	}
	return pid, nil
}

// run runs a Postfix command and returns its combined output.
func (i *Instance) run(name string, args ...string) ([]byte, error) {
	cmd := i.command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// command prepares a Postfix command for this instance.
func (i *Instance) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	// Postfix programs honour MAIL_CONFIG; "-c" must be the only say.
	cmd.Env = withoutEnv(os.Environ(), "MAIL_CONFIG")
	return cmd
}

func withoutEnv(env []string, name string) []string {
	kept := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			kept = append(kept, kv)
		}
	}
	return kept
}

// Dir is the instance directory: etc/ (main.cf, master.cf), spool/ (the
// queue), data/ and maillog.
func (i *Instance) Dir() string { return i.l.root }

// SMTPAddr is the host:port of the public smtpd (with milters).
func (i *Instance) SMTPAddr() string { return i.smtpAddr }

// ReinjectAddr is the host:port of the reinjection smtpd, or "" unless
// Options.Reinject.
func (i *Instance) ReinjectAddr() string { return i.reinjectAddr }

// running reports whether this instance's master holds its lock.
func (i *Instance) running() bool {
	// master -t exits 0 when the master is NOT running.
	_, err := i.run(i.bin.master, "-c", i.l.configDir, "-t")
	return err != nil
}

// stop stops the master and its daemons, empties the queue and removes the
// instance directory. Errors fail t: a Postfix left running outlives the
// test binary.
func (i *Instance) stop(t testing.TB) {
	t.Helper()
	i.stopOnce.Do(func() {
		if t.Failed() && i.Log() != "" {
			t.Logf("postfixtest: maillog of %s:\n%s", i.l.root, i.logTail(60))
		}
		// postsuper first: without a running postlogd it would log to the
		// maillog itself, after dropping root, and fail on the root-owned file.
		if i.masterPID != 0 {
			if out, err := i.run(i.bin.postsuper, "-c", i.l.configDir, "-d", "ALL"); err != nil {
				t.Errorf("postfixtest: postsuper -d ALL: %v: %s", err, out)
			}
		}
		if err := i.stopMaster(); err != nil {
			t.Errorf("postfixtest: %v", err)
		}
		if err := i.watchdog.dismiss(); err != nil {
			t.Errorf("postfixtest: %v", err)
		}
		if err := removeAll(i.l.root); err != nil {
			t.Errorf("postfixtest: %v", err)
		}
	})
}

// stopMaster is "postfix stop" without its one-second sleeps: SIGTERM to
// the master (which passes it on to its daemons), then wait for the master
// and its process group, then SIGKILL what is left.
func (i *Instance) stopMaster() error {
	if i.masterPID == 0 {
		return nil // never started
	}
	if i.running() {
		if out, err := i.run(i.bin.postfix, "-c", i.l.configDir, "abort"); err != nil && i.running() {
			return fmt.Errorf("postfix abort: %v: %s", err, out)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		live := groupMembers(i.masterPID)
		if len(live) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			for _, pid := range live {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			return fmt.Errorf("Postfix processes %v of %s did not exit on SIGTERM; killed", live, i.l.root)
		}
		<-tick.C
	}
}

// groupMembers lists the live (non-zombie) processes in process group pgid:
// the master leads its own group, and its daemons are in it. Zombies are
// left out because the init process here may never reap an orphan.
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp ..."; comm may contain anything.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		f := strings.Fields(string(rest))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeAll retries because a daemon that is just exiting may still write
// to the maillog while the directory is being removed.
func removeAll(dir string) error {
	var err error
	for range 5 {
		if err = os.RemoveAll(dir); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("removing %s: %w", dir, err)
}
