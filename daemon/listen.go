package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/restrictedmail/restrictedmail/config"
)

// Listen opens a listener for l. For a unix socket it removes a stale
// socket file left by a crash (but refuses to steal one that a live process
// answers on), then sets the socket's mode and group so that Postfix — and
// only Postfix — can connect.
func Listen(l config.Listen, mode config.FileMode, group string) (net.Listener, error) {
	if l.Network != "unix" {
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			return nil, fmt.Errorf("listening on %s: %w", l, err)
		}
		return ln, nil
	}
	if err := removeStale(l.Address); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(l.Address), 0o755); err != nil {
		return nil, fmt.Errorf("creating the directory of %s: %w", l.Address, err)
	}
	// Until the chmod below the socket has the umask's mode; connecting
	// needs write permission, which a sane umask (022, or systemd's) does
	// not give others, so there is no window in which a stranger connects.
	ln, err := net.Listen("unix", l.Address)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", l, err)
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket group %q: %w", group, err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(l.Address, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("setting the group of %s: %w", l.Address, err)
		}
	}
	if err := os.Chmod(l.Address, os.FileMode(mode)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("setting the mode of %s: %w", l.Address, err)
	}
	return ln, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process (is restrictedmail already running?)", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}
