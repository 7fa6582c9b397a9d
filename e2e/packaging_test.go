package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies: the shipped unit, pointed at the freshly built
// binary, passes `systemd-analyze verify` and keeps its hardening.
func TestSystemdUnitVerifies(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed to verify the unit: apt-get install -y systemd (%v)", err)
	}
	unit, err := os.ReadFile("../etc/systemd/restrictedmail.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nUser=restrictedmail\n", "\nGroup=restrictedmail\n", "\nStateDirectory=restrictedmail\n",
		"\nRuntimeDirectory=restrictedmail\n", "\nRuntimeDirectoryMode=0755\n", "\nProtectSystem=strict\n",
		"\nNoNewPrivileges=yes\n", "\nRestart=on-failure\n", "\nExecReload=/bin/kill -HUP $MAINPID\n",
		"\nSystemCallFilter=@chown\n", "\nSystemCallErrorNumber=EPERM\n",
		"\nExecStart=/usr/local/bin/restrictedmail serve --config /etc/restrictedmail/restrictedmail.toml\n",
	} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "restrictedmail.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/restrictedmail"), []byte(binary)), 0o644); err != nil {
		t.Fatal(err)
	}
	// --man=no: the Documentation= man pages are installed by the Debian
	// package, whose test (.ci/package-test) verifies the unit with them.
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	// Warnings about other units on this machine are not ours to fail on.
	if err != nil || bytes.Contains(out, []byte("restrictedmail")) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestMakeInstall: `make install` puts the binary, the unit (with its paths
// following BINDIR and SYSCONFDIR) and the example configuration in place,
// and never overwrites an existing configuration.
func TestMakeInstall(t *testing.T) {
	t.Parallel()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is needed: apt-get install -y make (%v)", err)
	}
	dest := t.TempDir()
	install := func() string {
		t.Helper()
		// -o build: install the binary TestMain built instead of building
		// one into the source tree.
		cmd := exec.Command(mk, "-s", "-o", "build", "install", "DESTDIR="+dest, "BINARY="+binary, "BINDIR=/opt/rm/bin")
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
		return string(out)
	}
	install()
	for file, mode := range map[string]os.FileMode{
		"opt/rm/bin/restrictedmail":                 0o755,
		"etc/systemd/system/restrictedmail.service": 0o644,
		"etc/restrictedmail":                        0o750 | os.ModeDir,
		"etc/restrictedmail/restrictedmail.toml":    0o640,
	} {
		fi, err := os.Stat(filepath.Join(dest, file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if fi.Mode()&(os.ModePerm|os.ModeDir) != mode {
			t.Errorf("%s has mode %v, want %v", file, fi.Mode(), mode)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/restrictedmail.service"))
	if !bytes.Contains(unit, []byte("\nExecStart=/opt/rm/bin/restrictedmail serve --config /etc/restrictedmail/restrictedmail.toml\n")) {
		t.Errorf("the installed unit does not run the installed binary:\n%s", unit)
	}
	example, _ := os.ReadFile("../etc/restrictedmail.toml")
	conf := filepath.Join(dest, "etc/restrictedmail/restrictedmail.toml")
	if got, _ := os.ReadFile(conf); !bytes.Equal(got, example) {
		t.Errorf("the installed configuration is not the example")
	}
	if err := os.WriteFile(conf, []byte("# the administrator's\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if out := install(); !strings.Contains(out, "keeping the existing") {
		t.Errorf("make install does not say it keeps the configuration:\n%s", out)
	}
	if got, _ := os.ReadFile(conf); string(got) != "# the administrator's\n" {
		t.Errorf("make install overwrote the configuration")
	}
}
