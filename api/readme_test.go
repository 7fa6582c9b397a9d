package api_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeExamples returns the shell blocks of README.md's "Example session"
// of the HTTP API, in order.
func readmeExamples(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks []string
		in     bool // in the section
		code   *strings.Builder
	)
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "### Example session"):
			in = true
		case in && code == nil && (strings.HasPrefix(line, "## ") || strings.HasPrefix(line, "### ")):
			in = false
		case in && code == nil && line == "```sh":
			code = &strings.Builder{}
		case in && code != nil && line == "```":
			blocks = append(blocks, code.String())
			code = nil
		case code != nil:
			code.WriteString(line + "\n")
		}
	}
	if len(blocks) == 0 {
		t.Fatal(`README.md has no "### Example session" with sh blocks`)
	}
	return blocks
}

// TestREADMEExamples runs the README's curl examples as they are written,
// one shell, against `serve`, and checks what they leave behind.
func TestREADMEExamples(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: apt-get install -y curl jq", tool)
		}
	}
	e := start(t, "")
	key := e.fullKey()
	dir := t.TempDir()
	script := "set -euo pipefail\n" + strings.Join(readmeExamples(t), "\n")
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RM_API="+e.base+"/api/v1", "RM_KEY="+key)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's examples failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"total": 1`, `"m3@example.com"`, `"type": "urn:restrictedmail:problem:revoked"`, `"status": 409`, `"address": "board@example.org"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the examples' output lacks %s:\n%s", want, out)
		}
	}
	file, err := os.ReadFile(filepath.Join(dir, "token.txt"))
	if err != nil || !regexp.MustCompile(`^RMTOKEN[a-z2-7]{32}\n$`).Match(file) {
		t.Errorf("token.txt = %q, %v", file, err)
	}
	if strings.Contains(e.log.String(), key) {
		t.Error("the API key is in the log")
	}
	for _, msg := range []string{"API: token issued", "API: issue replayed", "API: token recipients replaced", "API: token re-keyed", "API: token revoked"} {
		if !strings.Contains(e.log.String(), msg) {
			t.Errorf("the log has no %q", msg)
		}
	}
}
