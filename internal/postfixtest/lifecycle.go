package postfixtest

// Starting and stopping the master, and running Postfix commands.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

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
		if i.masterPID != 0 && i.running() {
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
		// Start failed, but a master may still have come up.
		if _, err := os.Stat(filepath.Join(i.l.queueDir, "pid", "master.pid")); err != nil || !i.running() {
			return nil
		}
		pid, err := i.readMasterPID()
		if err != nil {
			return err
		}
		i.masterPID = pid
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
			return fmt.Errorf("postfix processes %v of %s did not exit on SIGTERM; killed", live, i.l.root)
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

func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing instance directory: %w", err)
	}
	return nil
}
