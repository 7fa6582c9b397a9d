package milter

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMiltertest drives the server with miltertest, an independent,
// libmilter-based MTA side, running the Lua scripts of testdata/miltertest.
// Each script fails (exits non-zero) on an unexpected reply.
func TestMiltertest(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("miltertest")
	if err != nil {
		t.Fatalf("miltertest is needed: apt-get install -y miltertest (%v)", err)
	}
	scripts, err := filepath.Glob("testdata/miltertest/*.lua")
	if err != nil || len(scripts) < 3 {
		t.Fatalf("miltertest scripts: %v %v", scripts, err)
	}
	h := newHarness(t)
	_, port, err := net.SplitHostPort(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, script := range scripts {
		t.Run(filepath.Base(script), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-s", script)
			cmd.Env = append(os.Environ(), "MILTER_PORT="+port)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("miltertest -s %s: %v\n%s", script, err, out)
			}
		})
	}
	h.waitLog(t, "message rejected", "queue_id=MTQUEUE2", "reason=no_token", "list=board@example.org", "recipients=2")
}
