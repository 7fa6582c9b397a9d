package guard

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func limits() Limits { return Limits{Limit: 3, Window: 10 * time.Minute, Block: 15 * time.Minute} }

func TestBlocksAfterLimitWithinWindow(t *testing.T) {
	t.Parallel()
	g := New(limits(), 0)
	client := ClientKey("192.0.2.7")
	for i := range 2 {
		if g.Fail(t0.Add(time.Duration(i)*time.Minute), client) {
			t.Fatalf("blocked after %d failures, limit 3", i+1)
		}
		if g.Blocked(t0.Add(time.Duration(i)*time.Minute), client) {
			t.Fatalf("blocked after %d failures", i+1)
		}
	}
	if !g.Fail(t0.Add(2*time.Minute), client) {
		t.Fatal("the third failure within the window did not block")
	}
	for _, d := range []time.Duration{2 * time.Minute, 10 * time.Minute, 17*time.Minute - time.Second} {
		if !g.Blocked(t0.Add(d), client) {
			t.Errorf("not blocked at +%v (block ends at +17m)", d)
		}
	}
	if g.Blocked(t0.Add(17*time.Minute), client) {
		t.Error("still blocked when the block has ended")
	}
	// After the block the count starts afresh.
	if g.Fail(t0.Add(18*time.Minute), client) || g.Blocked(t0.Add(18*time.Minute), client) {
		t.Error("one failure after the block blocked again")
	}
}

func TestWindowExpires(t *testing.T) {
	t.Parallel()
	g := New(limits(), 0)
	k := SenderKey("Mallory@Example.NET")
	g.Fail(t0, k)
	g.Fail(t0.Add(time.Minute), k)
	// The third failure comes after the window: a new window starts.
	if g.Fail(t0.Add(11*time.Minute), k) {
		t.Fatal("failures of two windows were added up")
	}
	if g.Fail(t0.Add(12*time.Minute), k) {
		t.Fatal("blocked after two failures in the new window")
	}
	if !g.Fail(t0.Add(13*time.Minute), k) {
		t.Fatal("three failures in the new window did not block")
	}
}

func TestOthersUnaffected(t *testing.T) {
	t.Parallel()
	g := New(limits(), 0)
	bad, badSender := ClientKey("192.0.2.7"), SenderKey("mallory@example.net")
	for range 3 {
		g.Fail(t0, bad, badSender)
	}
	if !g.Blocked(t0, bad, "") || !g.Blocked(t0, "", badSender) {
		t.Fatal("the guessing client and sender are not blocked")
	}
	if g.Blocked(t0, ClientKey("192.0.2.8"), SenderKey("alice@example.net")) {
		t.Error("another client and sender are blocked")
	}
	// The same client with another sender: the client is blocked.
	if !g.Blocked(t0, bad, SenderKey("alice@example.net")) {
		t.Error("a blocked client escaped by changing its sender")
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	if SenderKey("<>") != "" || SenderKey("") != "" || ClientKey(" ") != "" {
		t.Error("the null sender or an empty client has a key")
	}
	if SenderKey("Alice@Example.net") != SenderKey("<alice@example.NET>") {
		t.Error("sender keys depend on case or brackets")
	}
	if ClientKey("192.0.2.1") == SenderKey("192.0.2.1") {
		t.Error("client and sender keys collide")
	}
}

func TestDisabled(t *testing.T) {
	t.Parallel()
	var nilGuard *Guard
	for name, g := range map[string]*Guard{
		"nil":     nilGuard,
		"limit 0": New(Limits{Limit: 0, Window: time.Minute, Block: time.Minute}, 0),
		"block 0": New(Limits{Limit: 1, Window: time.Minute}, 0),
	} {
		for range 10 {
			if g.Fail(t0, ClientKey("192.0.2.7")) {
				t.Errorf("%s: a disabled guard blocked", name)
			}
		}
		if g.Blocked(t0, ClientKey("192.0.2.7")) || g.Len() != 0 {
			t.Errorf("%s: a disabled guard holds %d keys or blocks", name, g.Len())
		}
	}
	g := New(limits(), 0)
	for range 3 {
		g.Fail(t0, ClientKey("192.0.2.7"))
	}
	g.SetLimits(Limits{})
	if g.Blocked(t0, ClientKey("192.0.2.7")) || g.Len() != 0 {
		t.Error("disabling by reload kept the block")
	}
}

// TestBoundedMemory: a hostile sender inventing a new address for every
// guess does not grow the guard beyond its bound, and the key under attack
// (touched at every attempt) stays blocked while the others are forgotten.
func TestBoundedMemory(t *testing.T) {
	t.Parallel()
	const maxKeys = 100
	g := New(limits(), maxKeys)
	attacker := ClientKey("192.0.2.66")
	for range 3 {
		g.Fail(t0, attacker)
	}
	for i := range 100000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if !g.Blocked(now, attacker, SenderKey(fmt.Sprintf("x%d@example.net", i))) {
			t.Fatalf("the attacker was forgotten after %d invented senders", i)
		}
		// The attempt is refused before the lookup, so nothing is recorded;
		// a guesser whose client is not blocked yet adds senders, though.
		g.Fail(now, SenderKey(fmt.Sprintf("y%d@example.net", i)))
		if n := g.Len(); n > maxKeys {
			t.Fatalf("%d keys held, bound %d", n, maxKeys)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	g := New(Limits{Limit: 1000, Window: time.Hour, Block: time.Hour}, 64)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := ClientKey(fmt.Sprintf("198.51.100.%d", (w*7+i)%97))
				g.Fail(t0, k)
				g.Blocked(t0, k)
			}
		})
	}
	wg.Wait()
	if n := g.Len(); n > 64 {
		t.Errorf("%d keys, bound 64", n)
	}
}
