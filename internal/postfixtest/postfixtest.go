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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// installHint is how to get every tool that the end-to-end tests use.
const installHint = "apt-get install -y postfix swaks miltertest python3-dkim"

// requiredTools are the commands that Require checks for.
var requiredTools = []string{"postfix", "postqueue", "postsuper", "postcat", "postconf", "smtp-sink", "swaks"}

// shortSkip is why Require skips in -short mode.
const shortSkip = "real Postfix: not in -short mode"

// Require skips the test in -short mode: this is the one place where
// `go test -short` leaves out every test that runs a real Postfix. Otherwise
// it fails the test, with the command that installs them, when a tool that
// Postfix end-to-end tests need is missing. Missing tools are a broken test
// environment, not a reason to skip.
//
// A test that does expensive work before Start (building binaries, starting
// servers) calls Require first.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip(shortSkip)
	}
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

// Options configure one instance. The zero value accepts nothing for
// delivery: without RelayHost or Transport there is nowhere to deliver to.
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
	// there too. When empty, nothing is looked up in DNS: smtpd refuses
	// such recipients with "450 4.3.5 ... postfixtest: Options.RelayHost is
	// not set", and queued mail for them (DSNs) stays deferred.
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

// Start creates, checks and starts an instance for t, and returns once its
// smtpd ports accept connections. It is stopped, its queue emptied and its
// directory removed when t ends. Start fails t, with Postfix's own
// messages, when a tool is missing, when Options.MainCF names a parameter
// that Postfix does not know, or when "postfix start" fails. In -short mode
// it skips t (see Require).
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	Require(t) // skips in -short mode
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

// Dir is the instance directory: etc/ (main.cf, master.cf), spool/ (the
// queue), data/ and maillog.
func (i *Instance) Dir() string { return i.l.root }

// SMTPAddr is the host:port of the public smtpd (with milters).
func (i *Instance) SMTPAddr() string { return i.smtpAddr }

// ReinjectAddr is the host:port of the reinjection smtpd, or "" unless
// Options.Reinject.
func (i *Instance) ReinjectAddr() string { return i.reinjectAddr }
