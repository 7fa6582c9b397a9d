package milter

import (
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/internal/generation"
)

// The index may send an ordinary address down the slow path, but must
// never let a restricted one through as ordinary.
func checkIndexAgrees(t *testing.T, x *index, rcpt string) {
	t.Helper()
	rc, err := x.rules.Resolve(rcpt)
	if err != nil {
		return
	}
	if rc.List != nil && !x.mayBeRestricted(rcpt) {
		t.Errorf("%q is restricted (%s), but the index calls it ordinary", rcpt, rc.List.Addr)
	}
}

var indexSeeds = []string{
	"board@example.org", "BOARD@Example.ORG", "<board@example.org>", " board@example.org ",
	"board@example.org.", "board+tok@example.org", "Board+T_o-k@EXAMPLE.org", "board++x@example.org",
	"board+@example.org", "+board@example.org", "board@xn--exmple-cua.org", "board@exämple.org",
	"board@EXAMPLE.ORG.", `"board"@example.org`, "restricted@abakus.no", "dave@example.org",
	"board@example.org@example.org", "events+a+b@example.org", "board", "", "\u212Aboard@example.org",
	"<@relay.test:board@example.org>", `"bo\ard"@example.org`, "board+x.@example.org", "ſ@example.org",
}

func TestIndexAgreesWithListFor(t *testing.T) {
	t.Parallel()
	x := newIndex(generation.Rules(testConfig(t, t.TempDir())))
	for _, s := range indexSeeds {
		checkIndexAgrees(t, x, s)
	}
	for _, s := range []string{"board@example.org", "BOARD+abc@EXAMPLE.org.", "<events@example.org>"} {
		if !x.mayBeRestricted(s) {
			t.Errorf("%q: index says ordinary", s)
		}
	}
	for _, s := range []string{"dave@example.org", "board@example.com", "boardx@example.org", "board.x@example.org", "+board@example.org"} {
		if x.mayBeRestricted(s) {
			t.Errorf("%q: index says maybe restricted", s)
		}
	}
}

func FuzzIndexAgreesWithListFor(f *testing.F) {
	for _, s := range indexSeeds {
		f.Add(s)
	}
	x := newIndex(generation.Rules(testConfig(f, f.TempDir())))
	f.Fuzz(func(t *testing.T, rcpt string) { checkIndexAgrees(t, x, rcpt) })
}

// fakeModifier gives the callbacks the macros they read; nothing else is
// used on these paths.
type fakeModifier struct{ gomilter.Modifier }

// Get answers as Postfix does for ordinary mail: a transport and a next hop
// that are not the LMTP endpoint's.
func (*fakeModifier) Get(name gomilter.MacroName) string {
	switch name {
	case gomilter.MacroRcptMailer:
		return "relay"
	case gomilter.MacroRcptHost:
		return "[mail.example.com]:25"
	}
	return ""
}

// TestOrdinaryPathAllocatesNothing: the milter's own work for a message
// without a restricted recipient is allocation-free: MAIL FROM, RCPTs,
// DATA and the abort that follows.
func TestOrdinaryPathAllocatesNothing(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	s := New(Options{Rules: rulesOf(cfg)})
	c := &session{srv: s}
	// A pointer: converting a struct value to the interface would allocate.
	mod := &fakeModifier{}
	allocs := testing.AllocsPerRun(1000, func() {
		c.MailFrom(sender, "", mod)
		c.RcptTo(ordinary, "", mod)
		c.RcptTo("Someone.Else@Example.COM", "", mod)
		c.RcptTo("board.x+y@example.org", "", mod)
		if r, _ := c.Data(mod); r != gomilter.RespAccept {
			t.Fatalf("DATA: %v", r)
		}
		c.Abort(mod)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per ordinary message, want 0", allocs)
	}
}
