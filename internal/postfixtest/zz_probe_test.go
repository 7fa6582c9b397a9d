package postfixtest

import (
	"testing"
	"time"
)

func TestZZProbe(t *testing.T) {
	inst := Start(t, Options{})
	for range 3 {
		b := time.Now()
		out, err := inst.run(inst.bin.postfix, "-c", inst.l.configDir, "check")
		t.Logf("postfix check %v %v %s", time.Since(b), err, out)
	}
}
