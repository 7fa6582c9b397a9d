package main

import (
	"bytes"
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Least privilege, as `serve` starts: a warning for secret files others
// can read, no listener on the network without an allow-list, a store and
// unix sockets only their owners (and Postfix's group) can open.

// lockedBuffer is serve's stderr, read while serve runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServe runs `serve --config path` until it logs that it started. It
// returns its output, and stop, which stops it as SIGTERM would and returns
// its exit code; started is false when serve exited before starting (its
// code is then in stop()).
func startServe(t *testing.T, path string) (out *lockedBuffer, started bool, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &lockedBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path}, out, out) }()
	stop = func() int {
		cancel()
		select {
		case code := <-done:
			done <- code
			return code
		case <-time.After(30 * time.Second):
			t.Fatalf("serve did not stop:\n%s", out.String())
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond) // serve's output cannot notify the test
	defer tick.Stop()
	for !strings.Contains(out.String(), "restrictedmail started") {
		select {
		case code := <-done:
			done <- code
			return out, false, stop
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", out.String())
		}
	}
	return out, true, stop
}

// serveUntilStarted starts serve, stops it, and returns its output and
// exit code.
func serveUntilStarted(t *testing.T, path string) (string, int) {
	t.Helper()
	out, _, stop := startServe(t, path)
	code := stop()
	return out.String(), code
}

const serveListeners = `
[milter]
listen = "inet:127.0.0.1:0"
[lmtp]
listen = "inet:127.0.0.1:0"
`

// TestServeWarnsAboutReadableSecrets: a DKIM key and a relay password file
// that every user can read are named in a warning when serve starts.
func TestServeWarnsAboutReadableSecrets(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(testConfig, "[tokens]", serveListeners+`
[relay]
address = "relay.example.org:587"
tls = "starttls"
username = "relay@example.org"
password_file = "relay.password"
[tokens]`, 1)
	path := setup(t, doc)
	dir := filepath.Dir(path)
	if err := os.WriteFile(filepath.Join(dir, "relay.password"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"relay.password", "dkim.pem"} {
		if err := os.Chmod(filepath.Join(dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, code := serveUntilStarted(t, path)
	if code != exitOK {
		t.Fatalf("serve exited %d:\n%s", code, out)
	}
	for _, key := range []string{"relay.password_file", "dkim[0].private_key_file"} {
		if !strings.Contains(out, "warning: line") || !strings.Contains(out, key+": ") || !strings.Contains(out, "readable by every user") {
			t.Errorf("no warning for a world-readable %s:\n%s", key, out)
		}
	}
	if strings.Contains(out, "secret") {
		t.Errorf("the password appears in the output:\n%s", out)
	}
}

// TestServeRefusesNetworkListenerWithoutAllowList: a listener off loopback
// without allowed_networks is a configuration error: serve does not start.
func TestServeRefusesNetworkListenerWithoutAllowList(t *testing.T) {
	t.Parallel()
	for _, section := range []string{"milter", "lmtp"} {
		doc := strings.Replace(testConfig, "[tokens]", serveListeners+"\n[tokens]", 1)
		doc = strings.Replace(doc, "["+section+"]\nlisten = \"inet:127.0.0.1:0\"", "["+section+"]\nlisten = \"inet:0.0.0.0:0\"", 1)
		out, code := serveUntilStarted(t, setup(t, doc))
		if code != exitFailure || !strings.Contains(out, section+".listen") || !strings.Contains(out, "reachable from the network") {
			t.Errorf("%s on 0.0.0.0 without allowed_networks: exit %d\n%s", section, code, out)
		}
	}
}

// TestServeCreatesTightFiles: the store and its WAL files are 0600, the
// unix sockets have the configured mode and group.
func TestServeCreatesTightFiles(t *testing.T) {
	t.Parallel()
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	sockets, err := os.MkdirTemp("", "rmsock") // a path short enough for a socket
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockets) })
	milterSock, lmtpSock := filepath.Join(sockets, "milter.sock"), filepath.Join(sockets, "lmtp.sock")
	doc := strings.Replace(testConfig, "[tokens]", `
[milter]
listen = "unix:`+milterSock+`"
socket_mode = "0660"
socket_group = "`+g.Name+`"
[lmtp]
listen = "unix:`+lmtpSock+`"
socket_mode = "0600"
[tokens]`, 1)
	path := setup(t, doc)
	out, started, stop := startServe(t, path)
	if !started {
		t.Fatalf("serve did not start:\n%s", out.String())
	}
	db := filepath.Join(filepath.Dir(path), "state.db")
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	for sock, mode := range map[string]os.FileMode{milterSock: 0o660, lmtpSock: 0o600} {
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want a socket with %v", sock, fi.Mode(), mode)
		}
	}
	if fi, err := os.Stat(milterSock); err == nil && strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)) != g.Gid {
		t.Errorf("milter socket group %d, want %s", fi.Sys().(*syscall.Stat_t).Gid, g.Gid)
	}
	if code := stop(); code != exitOK {
		t.Errorf("serve exited %d:\n%s", code, out.String())
	}
}
