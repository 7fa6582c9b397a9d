package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/internal/manpage"
)

// TestCompletionBash loads the generated script into a real bash and asks
// it what it completes.
func TestCompletionBash(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed: apt-get install -y bash (%v)", err)
	}
	code, script, errOut := cli("completion", "bash")
	if code != exitOK {
		t.Fatalf("completion bash: exit %d\n%s", code, errOut)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "restrictedmail.bash")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bash, "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "board.toml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		// COMP_WORDS as bash builds it; the last word is the one completed.
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c",
			`source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _restrictedmail; printf '%s\n' "${COMPREPLY[@]}"`,
			"bash", path)
		cmd.Args = append(cmd.Args, words...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("completing %q: %v\n%s", words, err, out)
		}
		return strings.Fields(string(out))
	}
	for _, tt := range []struct {
		words []string
		want  string
	}{
		{[]string{"restrictedmail", "tok"}, "token"},
		{[]string{"restrictedmail", "check-c"}, "check-config"},
		{[]string{"restrictedmail", "token", "is"}, "issue"},
		{[]string{"restrictedmail", "dkim", ""}, "keygen check"},
		{[]string{"restrictedmail", "token", "issue", "--hi"}, "--hide-sender"},
		{[]string{"restrictedmail", "serve", "--con"}, "--config"},
		{[]string{"restrictedmail", "demo", "-"}, "--keep -v"},
		{[]string{"restrictedmail", "serve", "--config", "boa"}, "board.toml"},
		{[]string{"restrictedmail", "token", "issue", "-out", "boa"}, "board.toml"},
		{[]string{"restrictedmail", "token", "issue", "--list", "boa"}, ""},
		{[]string{"restrictedmail", "completion", ""}, "bash"},
		{[]string{"restrictedmail", "test", "--config", "x", "boa"}, "board.toml"},
	} {
		if got := strings.Join(complete(tt.words...), " "); got != tt.want {
			t.Errorf("completing %q: %q, want %q", tt.words, got, tt.want)
		}
	}
	// A flag whose value is a directory completes directories.
	synthetic := bashCompletion([]manpage.Command{{Name: "x", Synopsis: "x", Flags: []manpage.Flag{
		{Name: "spool", Arg: "directory", Usage: "where"}}}})
	if err := os.WriteFile(path, []byte(synthetic), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "boards"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(complete("restrictedmail", "x", "--spool", "boa"), " "); got != "boards" {
		t.Errorf("completing a directory: %q, want boards", got)
	}
	if code, _, _ := cli("completion", "zsh"); code != exitUsage {
		t.Errorf("completion zsh: exit %d, want %d", code, exitUsage)
	}
}

// TestVersion: the version, the commit and the Go version, one a line.
func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := cli("version")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 3 || !strings.HasPrefix(lines[0], "restrictedmail ") ||
		!strings.HasPrefix(lines[1], "commit ") || !strings.HasPrefix(lines[2], "built with go") {
		t.Errorf("version: exit %d\n%s", code, out)
	}
	if code, out2, _ := cli("--version"); code != exitOK || out2 != out {
		t.Errorf("--version: exit %d %q", code, out2)
	}
}
