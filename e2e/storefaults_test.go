package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
	"github.com/restrictedmail/restrictedmail/store"
)

// The store and the spool directory in trouble: another process holding
// the database's write lock beyond its busy timeout, a database the daemon
// may not write, a spool directory it may not write.

// lockStore takes the store's write lock from this process (another
// process than the daemon, as `restrictedmail token` or a backup would be)
// and returns the function that releases it.
func lockStore(path string) (release func(), err error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)")
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(context.Background())
	if err == nil {
		_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("locking the store: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
			db.Close()
		})
	}, nil
}

// TestFaultStoreLockedBeforeDelivery: the store's write lock is held by
// another process for longer than the busy timeout when the message
// arrives: the milter still reads (WAL), the LMTP endpoint cannot spend
// the token and answers 451; Postfix delivers once the lock is gone.
func TestFaultStoreLockedBeforeDelivery(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	a := newAudit(t, w, "store-locked-before-delivery")
	toks := a.issue(2)
	release, err := lockStore(w.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	for i, tok := range toks {
		if m := a.submit(tok, carrier(i), "deliver"); m.res.Data != nil {
			t.Fatalf("the milter refused while the store was locked for writing: %v", m.res.Data)
		}
	}
	// The endpoint waits store.DefaultBusyTimeout, then answers 451.
	for _, q := range a.waitDeferred(len(toks)) {
		if r := q.Recipients[0].DelayReason; !strings.Contains(r, " 4.3.0 ") {
			t.Errorf("deferred for %q, want 451 4.3.0", r)
		}
	}
	release()
	a.settle(settleTime)
	a.report(0)
}

// TestFaultStoreLockedDuringFanOut: another process takes the write lock
// while the relay is taking the copies, and keeps it beyond the busy
// timeout. Recording the relay's answers fails, is retried, and succeeds
// once the lock is gone: the delivery completes, nobody gets two copies
// (before the journal retried, Postfix's next hand-over sent them again).
func TestFaultStoreLockedDuringFanOut(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, membersFile: 30, maxRecipients: 10, connections: 1})
	a := newAudit(t, w, "store-locked-during-fan-out")
	tok := a.issue(1)[0]
	var n atomic.Int32
	locked := make(chan struct{})
	w.relay.SetDataHook(func(testsmtp.Message) error {
		if n.Add(1) != 2 {
			return nil
		}
		release, err := lockStore(w.db)
		if err != nil {
			return err // the test fails below: nothing is locked
		}
		close(locked)
		// The fault lasts beyond the busy timeout; it is not a wait.
		time.AfterFunc(store.DefaultBusyTimeout+3*time.Second, release)
		return nil
	})
	a.submit(tok, "part", "deliver")
	select {
	case <-locked:
	case <-time.After(waitMail):
		t.Fatal("the store was never locked")
	}
	w.relay.WaitRecipients(t, 30, waitMail)
	a.settle(settleTime)
	f := a.report(0)
	if !strings.Contains(w.rm.log.String(), "needed retries") {
		t.Errorf("recording never failed: the lock did not hit the journal")
	}
	if lines := w.rm.log.lines("msg=delivery", "result=250", "delivered=30"); len(lines) != 1 || f.duplicated != 0 {
		t.Errorf("want one delivery completed in one hand-over, got %q", lines)
	}
}

// asNobody moves the daemon of w to a directory of its own, owned by the
// user nobody, and runs it as nobody (root ignores file modes: a
// read-only store or spool means nothing to it). It returns the new
// configuration.
func asNobody(t *testing.T, w *world) (conf string, cred *syscall.Credential) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	dir, err := os.MkdirTemp("", "rme2e-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	key := filepath.Join(dir, "dkim.pem")
	pem, err := os.ReadFile(w.key.Config.PrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(w.conf)
	if err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(dir, "restrictedmail.toml")
	db := filepath.Join(dir, "state.db")
	text := strings.ReplaceAll(strings.ReplaceAll(string(doc), w.key.Config.PrivateKeyFile, key), w.db, db)
	for _, err := range []error{
		os.WriteFile(key, pem, 0o600), os.WriteFile(conf, []byte(text), 0o644),
		os.Chown(dir, uid, gid), os.Chown(key, uid, gid), os.Chmod(dir, 0o755),
		// TestMain's build directory is 0700.
		os.Chmod(filepath.Dir(binary), 0o755),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	w.rm.stop()
	w.db = db
	return conf, cred
}

// spawn starts `serve` as cred without waiting for it to start.
func spawn(t *testing.T, conf string, cred *syscall.Credential) *daemonProc {
	t.Helper()
	p := &daemonProc{t: t, log: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, "serve", "--config", conf)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	p.cmd.Stderr, p.cmd.Stdout = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
		p.log.Write(nil)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("restrictedmail (as nobody) log:\n%s", p.log.String())
		}
	})
	return p
}

// startAs starts `serve` as cred and waits until it runs.
func (a *audit) startAs(conf string, cred *syscall.Credential) {
	a.t.Helper()
	a.w.rm = spawn(a.t, conf, cred)
	a.logs = append(a.logs, a.w.rm.log)
	a.w.rm.waitLog("restrictedmail started", 20*time.Second)
}

// chownAll gives the files of dir to cred (a store touched by root).
func chownAll(t *testing.T, dir string, cred *syscall.Credential) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Chown(filepath.Join(dir, e.Name()), int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFaultStoreReadOnly: the store is read-only for the daemon (a wrong
// owner or mode, a file system mounted read-only): `serve` refuses to start
// and says why; Postfix keeps the mail (the LMTP endpoint is not there)
// and delivers it once the store is writable again.
func TestFaultStoreReadOnly(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{})
	conf, cred := asNobody(t, w)
	a := newAudit(t, w, "store-read-only")
	a.startAs(conf, cred)
	toks := a.issue(3)
	a.w.rm.stop()
	dir := filepath.Dir(w.db)
	chownAll(t, dir, cred)
	for _, err := range []error{os.Chmod(w.db, 0o400), os.Chmod(dir, 0o555)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	p := spawn(t, conf, cred)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("serve started on a read-only store")
	}
	p.once.Do(func() {})
	a.logs = append(a.logs, p.log)
	if !strings.Contains(p.log.String(), "permission denied") || p.cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("serve on a read-only store: exit %d, log:\n%s; want exit 1 naming the problem", p.cmd.ProcessState.ExitCode(), p.log.String())
	}
	for i, tok := range toks {
		a.submit(tok, carrier(i), "deliver")
	}
	a.waitDeferred(len(toks))
	for _, err := range []error{os.Chmod(dir, 0o755), os.Chmod(w.db, 0o600)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	a.startAs(conf, cred)
	a.settle(settleTime)
	a.report(0)
}

// TestFaultSpoolNotWritable: the spool directory stops being writable
// while the daemon runs: the LMTP endpoint cannot take the message and
// answers 451 (no token is spent before the message is spooled); Postfix
// delivers once the directory is writable again.
func TestFaultSpoolNotWritable(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	conf, cred := asNobody(t, w)
	a := newAudit(t, w, "spool-not-writable")
	a.startAs(conf, cred)
	toks := a.issue(3)
	chownAll(t, filepath.Dir(w.db), cred)
	spool := filepath.Join(filepath.Dir(w.db), "spool")
	for _, err := range []error{os.MkdirAll(spool, 0o700), os.Chown(spool, int(cred.Uid), int(cred.Gid)), os.Chmod(spool, 0o500)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, tok := range toks {
		a.submit(tok, carrier(i), "deliver")
	}
	for _, q := range a.waitDeferred(len(toks)) {
		if r := q.Recipients[0].DelayReason; !strings.Contains(r, " 4.3.0 ") {
			t.Errorf("deferred for %q, want 451 4.3.0", r)
		}
	}
	if err := os.Chmod(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	a.settle(settleTime)
	a.report(0)
}
