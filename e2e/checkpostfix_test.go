package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPostfixCommand runs `restrictedmail check-postfix` against the
// private Postfix of a world: as postfixtest sets it up, the percent hack
// and bang paths are on (Postfix's defaults) and two problems are reported,
// exit 1; with them off, exit 0. serve logs the same problems at start.
func TestCheckPostfixCommand(t *testing.T) {
	t.Parallel()
	run := func(w *world) (int, string) {
		out, err := exec.Command(binary, "check-postfix", "--config", w.conf, "--postfix-config", filepath.Join(w.pf.Dir(), "etc")).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	w := newWorld(t, worldOpts{milter: true})
	code, out := run(w)
	if code != 1 || !strings.Contains(out, "allow_percent_hack = yes") || !strings.Contains(out, "swap_bangpath = yes") || !strings.Contains(out, "2 problem(s)") {
		t.Errorf("defaults: exit %d\n%s", code, out)
	}
	w.rm.waitLog("allow_percent_hack = yes", waitMail)

	clean := newWorld(t, worldOpts{milter: true, mainCF: map[string]string{"allow_percent_hack": "no", "swap_bangpath": "no"}})
	if code, out := run(clean); code != 0 || !strings.Contains(out, "Postfix: OK") {
		t.Errorf("clean: exit %d\n%s", code, out)
	}
}
