package daemon

import (
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/restrictedmail/restrictedmail/config"
)

// shortDir returns a directory whose paths fit a unix socket's 107 bytes
// (t.TempDir() paths can be longer).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rmsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestUnixSocketModeAndGroup(t *testing.T) {
	t.Parallel()
	path := filepath.Join(shortDir(t), "run", "milter.sock")
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(config.Listen{Network: "unix", Address: path}, 0o660, g.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; strconv.Itoa(int(gid)) != g.Gid {
		t.Errorf("socket group %d, want %s", gid, g.Gid)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connecting to the socket: %v", err)
	}
	c.Close()
}

func TestUnixSocketStaleAndLive(t *testing.T) {
	t.Parallel()
	path := filepath.Join(shortDir(t), "lmtp.sock")
	l := config.Listen{Network: "unix", Address: path}

	// A socket file left by a crash: nobody answers on it.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ln, err := Listen(l, 0o600, "")
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}

	// A live one (another restrictedmail) is not stolen.
	if _, err := Listen(l, 0o600, ""); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Listen on a live socket: %v, want an \"in use\" error", err)
	}
	ln.Close()

	// A regular file in the way is not removed.
	file := filepath.Join(shortDir(t), "not-a-socket")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(config.Listen{Network: "unix", Address: file}, 0o600, ""); err == nil {
		t.Error("Listen removed a regular file to make its socket")
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the regular file is gone: %v", err)
	}
}

func TestUnknownSocketGroup(t *testing.T) {
	t.Parallel()
	path := filepath.Join(shortDir(t), "x.sock")
	if _, err := Listen(config.Listen{Network: "unix", Address: path}, 0o660, "no-such-group-rm"); err == nil {
		t.Error("an unknown socket group was accepted")
	}
}
