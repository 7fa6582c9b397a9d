package config

import (
	"testing"
	"time"
)

// TestLease: lmtp.lease defaults to 2m, takes a duration, and refuses one
// shorter than 3s (the store counts whole seconds; renewals come every
// third of it), naming the key and its line.
func TestLease(t *testing.T) {
	t.Parallel()
	cfg, ps, _ := load(t, minimal)
	if ps.HasErrors() || cfg.LMTP.Lease.D() != 2*time.Minute {
		t.Fatalf("default lease %v, %v", cfg.LMTP.Lease, ps)
	}
	cfg, ps, _ = load(t, minimal+"\n[lmtp]\nlease = \"30s\"\n")
	if ps.HasErrors() || cfg.LMTP.Lease.D() != 30*time.Second {
		t.Fatalf("lease 30s: %v, %v", cfg.LMTP.Lease, ps)
	}
	doc := minimal + "\n[lmtp]\nlease = \"2s\"\n"
	_, ps, _ = load(t, doc)
	if p := wantError(t, ps, "lmtp.lease", "at least 3s"); p.Line != lineOf(t, doc, `lease = "2s"`) {
		t.Errorf("lmtp.lease reported on line %d", p.Line)
	}
}
