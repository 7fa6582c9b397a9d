package postfixtest

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// layout is where one instance keeps its files. Everything Postfix writes
// (queue, pid files, master.lock, caches, the log) lives under root, so
// instances in one test binary share nothing but the Postfix binaries.
type layout struct {
	root      string // 0755, so that the postfix user can enter it
	configDir string // main.cf, master.cf
	queueDir  string // queue_directory, including pid/master.pid
	dataDir   string // data_directory (master.lock, caches), owned by postfix
	maillog   string // maillog_file
}

func newLayout(root string) layout {
	return layout{
		root:      root,
		configDir: root + "/etc",
		queueDir:  root + "/spool",
		dataDir:   root + "/data",
		maillog:   root + "/maillog",
	}
}

// makeRoot creates the instance directory. Not t.TempDir: that is 0700 and
// nested in 0700 directories, which the postfix user cannot enter.
func makeRoot() (string, error) {
	base := os.TempDir()
	if len(base) > 64 {
		// Commands outside the queue directory reach the postlog socket by
		// its absolute path, and a Unix socket path has at most 107 bytes.
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
