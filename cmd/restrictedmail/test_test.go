package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/internal/dryrun"
)

// dryMessage is a message to board@example.org with tok in the token
// header ("" for none), with LF line endings as a saved .eml often has.
func dryMessage(t *testing.T, dir, tok string) string {
	t.Helper()
	m := "From: Alice <alice@example.net>\nTo: Example Board <board@example.org>\nSubject: dry run\n" +
		"Message-ID: <dry-1@example.net>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n"
	if tok != "" {
		m += "X-Restricted-Token: " + tok + "\n"
	}
	m += "\nHello board.\n"
	path := filepath.Join(dir, "msg-"+tok+".eml")
	if err := os.WriteFile(path, []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDryRun: `test` shows the milter's and the LMTP endpoint's verdicts,
// the recipients and the signed copy, exits by the verdict, and never
// spends the token.
func TestDryRun(t *testing.T) {
	t.Parallel()
	cfg := setup(t, testConfig)
	tok, _ := issue(t, "--config", cfg, "--list", "board@example.org")
	dir := t.TempDir()

	code, out, errOut := cli("test", "--config", cfg, "--from", "alice@example.net", "--to", "board@example.org", dryMessage(t, dir, tok))
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"milter:   accepted (at end of headers)\n",
		"lmtp <board@example.org>: 250 2.0.0 OK\n",
		"  token id:       " + record(t, cfg, tok).ID + "\n",
		"  envelope from:  <board-bounces@example.org>\n",
		"  recipients (2):\n    alice@example.net\n    bob@example.com\n",
		dryrun.BeginCopy + "DKIM-Signature: a=ed25519-sha256;",
		"From: \"Alice via Example Board\" <board@example.org>\r\n",
		"\r\n\r\nHello board.\r\n" + dryrun.EndCopy,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out[strings.Index(out, dryrun.BeginCopy):], tok) {
		t.Errorf("the token is in the copy")
	}
	if r := record(t, cfg, tok); r.UsesSpent != 0 {
		t.Errorf("the dry run spent the token (%d uses)", r.UsesSpent)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "spool")); err == nil {
		t.Errorf("the dry run created a spool directory")
	}

	// No token: both refuse, exit 1, no copy.
	code, out, _ = cli("test", "--config", cfg, "--from", "alice@example.net", "--to", "board@example.org", dryMessage(t, dir, ""))
	if code != exitFailure || !strings.Contains(out, "milter:   rejected: 550 5.7.1 No posting token found: <board@example.org>") ||
		!strings.Contains(out, "lmtp <board@example.org>: 550 5.7.1 No posting token found") || strings.Contains(out, dryrun.BeginCopy) {
		t.Errorf("tokenless: exit %d\n%s", code, out)
	}

	// A bad subaddress token is refused at RCPT; an ordinary recipient is
	// named as such.
	code, out, _ = cli("test", "--config", cfg, "--from", "alice@example.net", "--to", "board+nosuchtoken1@example.org", "--to", "someone@example.org", dryMessage(t, dir, ""))
	if code != exitFailure || !strings.Contains(out, "recipient <board+nosuchtoken1@example.org> refused at RCPT: 550 5.7.1 Unknown posting token") ||
		!strings.Contains(out, "ordinary: <someone@example.org> is no restricted address") {
		t.Errorf("bad subaddress: exit %d\n%s", code, out)
	}

	for _, c := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"--config", cfg, "--from", "a@example.net", dryMessage(t, dir, "")}, exitUsage, "--to is required"},
		{[]string{"--config", cfg, "--to", "board@example.org"}, exitUsage, "exactly one message file"},
		{[]string{"--config", cfg, "--to", "board@example.org", filepath.Join(dir, "missing.eml")}, exitFailure, "no such file"},
	} {
		code, _, errOut := cli(append([]string{"test"}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.text) {
			t.Errorf("test %q: exit %d %q; want %d %q", c.args, code, errOut, c.code, c.text)
		}
	}
}
