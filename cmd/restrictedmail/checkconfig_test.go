package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfigOK(t *testing.T) {
	t.Parallel()
	cfg := setup(t, testConfig)
	code, out, errOut := cli("check-config", "--config", cfg)
	if code != exitOK || out != cfg+": OK\n" || errOut != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and OK", code, out, errOut)
	}
	// One dash, and the flag after an = sign.
	if code, out, _ := cli("check-config", "-config="+cfg); code != exitOK || !strings.HasSuffix(out, ": OK\n") {
		t.Errorf("-config=: exit %d, %q", code, out)
	}
	// Warnings are shown, and are no failure.
	warn := setup(t, strings.Replace(testConfig, `address = "events@example.org"`, `address = "events@example.net"`, 1))
	code, out, _ = cli("check-config", "--config", warn)
	if code != exitOK || !strings.Contains(out, "warning: ") || !strings.Contains(out, "no [[dkim]] key for example.net") || !strings.HasSuffix(out, ": OK\n") {
		t.Errorf("with a warning: exit %d\n%s", code, out)
	}
}

func TestCheckConfigProblems(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(testConfig, `path = "state.db"`, "path = \"state.db\"\nsize = 5", 1)
	doc = strings.Replace(doc, `prefix = "RMTOKEN"`, "prefix = \"RMTOKEN\"\ndefault_uses = \"one\"", 1)
	doc = strings.Replace(doc, `bounce_address = "board-bounces@example.org"`, `bounce_address = "board@example.org"`, 1)
	cfg := setup(t, doc)
	code, out, _ := cli("check-config", "--config", cfg)
	if code != exitFailure {
		t.Errorf("exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		cfg + ": line 5: store.size: unknown key",
		cfg + ": line 9: tokens.default_uses: must be an integer, not a string",
		cfg + ": line 20: lists[0].bounce_address: must differ from the list address",
		cfg + ": 3 error(s)",
	}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s\nwant %d lines", out, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want %q...", i, lines[i], w)
		}
	}
	if strings.Contains(out, "OK") {
		t.Errorf("a bad file is called OK:\n%s", out)
	}
	// A missing file.
	missing := filepath.Join(t.TempDir(), "nope.toml")
	if code, out, _ := cli("check-config", "--config", missing); code != exitFailure || !strings.Contains(out, "cannot read") {
		t.Errorf("missing file: exit %d, %q", code, out)
	}
	if code, _, errOut := cli("check-config", "--config", cfg, "extra"); code != exitUsage || !strings.Contains(errOut, "unexpected argument") {
		t.Errorf("extra argument: exit %d, %q", code, errOut)
	}
}

func TestCheckConfigShippedExample(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "etc", "restrictedmail.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// The example's key file does not exist here: exactly that is reported.
	path := filepath.Join(t.TempDir(), "restrictedmail.toml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := cli("check-config", "--config", path)
	if code != exitFailure || !strings.Contains(out, "dkim[0].private_key_file: cannot read") || !strings.Contains(out, ": 1 error(s)") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

func TestDispatch(t *testing.T) {
	t.Parallel()
	if code, _, errOut := cli("frobnicate"); code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
	if code, _, errOut := cli(); code != exitUsage || !strings.Contains(errOut, "Usage:") {
		t.Errorf("no command: exit %d, %q", code, errOut)
	}
	for _, h := range []string{"help", "-h", "--help"} {
		if code, out, _ := cli(h); code != exitOK || !strings.Contains(out, "check-config") || !strings.Contains(out, "token") {
			t.Errorf("%s: exit %d, %q", h, code, out)
		}
	}
	for _, v := range []string{"version", "--version", "-version"} {
		if code, out, _ := cli(v); code != exitOK || !strings.HasPrefix(out, "restrictedmail ") {
			t.Errorf("%s: exit %d, %q", v, code, out)
		}
	}
	if code, _, errOut := cli("check-config", "--nope"); code != exitUsage || !strings.Contains(errOut, "Usage: restrictedmail check-config") {
		t.Errorf("bad flag: exit %d, %q", code, errOut)
	}
}

func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		pos  []string
		a    string
		b    bool
	}{
		{[]string{"x", "-a", "1"}, []string{"x"}, "1", false},
		{[]string{"--a=1", "x", "y", "--b"}, []string{"x", "y"}, "1", true},
		{[]string{"x", "--b", "y", "-a", "2"}, []string{"x", "y"}, "2", true},
		{[]string{"--", "-x"}, []string{"-x"}, "", false},
		// After "--" everything is positional, however many follow.
		{[]string{"-a", "1", "x", "--", "y", "-b", "--a=3"}, []string{"x", "y", "-b", "--a=3"}, "1", false},
		{[]string{"--", "x", "-b"}, []string{"x", "-b"}, "", false},
		{nil, nil, "", false},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		a := fs.String("a", "", "")
		b := fs.Bool("b", false, "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil || strings.Join(pos, "|") != strings.Join(tt.pos, "|") || *a != tt.a || *b != tt.b {
			t.Errorf("parseInterspersed(%q) = %q, %v (a=%q b=%v); want %q (a=%q b=%v)", tt.args, pos, err, *a, *b, tt.pos, tt.a, tt.b)
		}
	}
}
