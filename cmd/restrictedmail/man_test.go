package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/manpage"
)

// TestManPagesDocumentEverything is the drift test of the man pages: they
// are made from the commands' flag sets and the README's key table, and
// this fails — saying what to add where — when a command cannot be
// described, a flag has no usage text, or a configuration key has no row
// in README.md's "Configuration reference" table (or the table names a key
// that does not exist, or a default that is not the code's).
func TestManPagesDocumentEverything(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmd8, conf5, err := renderManPages(context.Background(), readme, "1.2.3", "2025-01-31")
	if err != nil {
		t.Fatalf("the man pages cannot be made; fix what follows:\n%v", err)
	}
	docs, err := commandDocs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	page := string(cmd8)
	described := map[string]bool{}
	for _, d := range docs {
		described[strings.SplitN(d.Name, " ", 2)[0]] = true
		if !strings.Contains(page, `.SS "`+strings.ReplaceAll(d.Name, "-", `\-`)+`"`) {
			t.Errorf("restrictedmail.8 has no section for %q", d.Name)
		}
		for _, f := range d.Flags {
			dashes := `\-\-`
			if len(f.Name) == 1 {
				dashes = `\-`
			}
			if !strings.Contains(page, `\fB`+dashes+strings.ReplaceAll(f.Name, "-", `\-`)+`\fR`) {
				t.Errorf("restrictedmail.8 does not describe %s --%s", d.Name, f.Name)
			}
		}
	}
	for _, c := range commands() {
		if c.run != nil && !described[c.name] {
			t.Errorf("command %q is not in restrictedmail.8", c.name)
		}
	}
	// Spot checks that the walk found what the commands define.
	for _, want := range []string{`.SS "token issue"`, `\fB\-\-hide\-sender\fR`, `\fB\-\-ttl\fR`, `.SS "dkim keygen"`, `\fB\-v\fR`, `.SS "completion"`} {
		if !strings.Contains(page, want) {
			t.Errorf("restrictedmail.8 lacks %q", want)
		}
	}
	conf := string(conf5)
	for _, k := range manpage.ConfigKeys(config.Default()) {
		if !strings.Contains(conf, `\fB`+strings.ReplaceAll(k.Name, "-", `\-`)+`\fR`) {
			t.Errorf("restrictedmail.toml.5 does not describe %s", k.Name)
		}
	}
	for _, p := range [][]byte{cmd8, conf5} {
		groffCheck(t, p)
	}
}

// TestManDriftIsCaught: a key dropped from the README's table stops the
// pages, with the row to add.
func TestManDriftIsCaught(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `log\\.level` \\|.*\\n")
	if !row.Match(readme) {
		t.Fatal("README.md has no row for log.level")
	}
	_, _, err = renderManPages(context.Background(), row.ReplaceAll(readme, nil), "1", "2025-01-31")
	if err == nil || !strings.Contains(err.Error(), "add a row \"| `log.level` | default | meaning |\"") {
		t.Errorf("a key without a row: %v", err)
	}
}

// TestManCommand: the hidden command writes both pages.
func TestManCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, out, errOut := cli("man", "--dir", dir, "--readme", "../../README.md", "--version", "9.9", "--date", "2025-02-01")
	if code != exitOK {
		t.Fatalf("man: exit %d\n%s%s", code, out, errOut)
	}
	for _, name := range []string{"restrictedmail.8", "restrictedmail.toml.5"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"2025\-02\-01" "restrictedmail 9.9"`)) {
			t.Errorf("%s: no date and version in .TH:\n%s", name, b[:200])
		}
	}
	if code, _, errOut := cli("man", "--dir", dir, "--readme", filepath.Join(dir, "missing.md")); code != exitFailure || !strings.Contains(errOut, "missing.md") {
		t.Errorf("a missing README: exit %d %s", code, errOut)
	}
}

// groffCheck fails t when groff -ww reports anything about page: the check
// lintian makes, and what `man --warnings` shows.
func groffCheck(t *testing.T, page []byte) {
	t.Helper()
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Fatalf("groff is needed to check the man pages: apt-get install -y groff-base (%v)", err)
	}
	cmd := exec.Command(groff, "-ww", "-man", "-Tutf8", "-z")
	cmd.Stdin = bytes.NewReader(page)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff -ww -man: %v\n%s", err, out)
	}
}
