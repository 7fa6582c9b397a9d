package milter

import (
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/token"
)

// sessionFrom opens an MTA connection whose {client_addr} is ip, sent at
// RCPT as Postfix does when the milter asks for it there.
func (h *harness) sessionFrom(t testing.TB, ip string) *gomilter.ClientSession {
	t.Helper()
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, testQueue)
	macros.Set(gomilter.MacroClientAddr, ip)
	cs, err := gomilter.NewClient("tcp", h.addr).Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	if _, err := cs.Conn("client.example.net", gomilter.FamilyInet, 40000, ip); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Helo("client.example.net"); err != nil {
		t.Fatal(err)
	}
	return cs
}

func withGuard(g *guard.Guard) func(*Options) { return func(o *Options) { o.Guard = g } }

const throttled = "450 4.7.1 Too many invalid posting tokens for <board@example.org>"

// TestGuessingFromOneClientIsSlowed: after guess_limit unknown subaddress
// tokens from one client address (each with another sender), that client's
// next attempt gets 450 4.7.1 — even with a valid token, which is not
// looked up — while another client's valid mail passes.
func TestGuessingFromOneClientIsSlowed(t *testing.T) {
	t.Parallel()
	g := guard.New(guard.Limits{Limit: 3, Window: time.Minute, Block: time.Hour}, 0)
	h := newHarness(t, withGuard(g))
	guesser := h.sessionFrom(t, "192.0.2.66")
	for i, s := range []string{"a@example.net", "b@example.net", "c@example.net"} {
		m := newMail("", []string{sub(board, token.Generate())})
		m.from = s
		out := send(t, guesser, m)
		wantReply(t, out.rcpt[0], 550, "550 5.7.1 Unknown posting token")
		if i == 2 {
			h.waitLog(t, "too many unknown posting tokens", "client=192.0.2.66")
		}
	}
	valid := h.addToken(t, func(r *token.Record) { r.UsesAllowed = 10 })
	m := newMail("", []string{sub(board, valid)})
	m.from = "d@example.net"
	out := send(t, guesser, m)
	wantReply(t, out.rcpt[0], 450, throttled)
	// The block is per recipient at RCPT: ordinary recipients go on.
	m = newMail("", []string{sub(board, token.Generate()), ordinary})
	m.from = "e@example.net"
	out = send(t, guesser, m)
	wantReply(t, out.rcpt[0], 450, throttled)
	wantContinue(t, out.rcpt[1])

	// A header token from the same client is refused at end of headers.
	out = send(t, guesser, newMail("", []string{board}, field{"X-Restricted-Token", valid}))
	if out.stage != "eoh" {
		t.Fatalf("decided at %s, want eoh", out.stage)
	}
	wantReply(t, out.act, 450, throttled)

	// Another client with the valid token is unaffected.
	out = send(t, h.sessionFrom(t, "192.0.2.10"), newMail("", []string{sub(board, valid)}))
	wantAccept(t, out, "eoh")
	h.waitLog(t, "message deferred", "reason=throttled", "code=450")
}

// TestGuessingFromOneSenderIsSlowed: the same sender guessing from several
// client addresses (a botnet behind one address) is blocked too, at any
// carrier; other senders are not.
func TestGuessingFromOneSenderIsSlowed(t *testing.T) {
	t.Parallel()
	g := guard.New(guard.Limits{Limit: 2, Window: time.Minute, Block: time.Hour}, 0)
	h := newHarness(t, withGuard(g))
	for i := range 2 {
		cs := h.sessionFrom(t, "198.51.100."+string(rune('1'+i)))
		out := send(t, cs, newMail(token.Generate(), []string{board}))
		wantReject(t, out, "eom", "Unknown posting token")
	}
	valid := h.addToken(t, func(r *token.Record) { r.UsesAllowed = 10 })
	out := send(t, h.sessionFrom(t, "198.51.100.9"), newMail(valid, []string{board}))
	if out.stage != "eom" {
		t.Fatalf("decided at %s, want eom", out.stage)
	}
	wantReply(t, out.act, 450, throttled)

	m := newMail(valid, []string{board})
	m.from = "someone.else@example.net"
	m.headers[0] = field{"From", "<someone.else@example.net>"}
	wantAccept(t, send(t, h.sessionFrom(t, "198.51.100.9"), m), "eom")
}

// TestKnownTokensAreNotGuesses: expired or used tokens and tokenless
// messages are rejected as before and never block anybody.
func TestKnownTokensAreNotGuesses(t *testing.T) {
	t.Parallel()
	g := guard.New(guard.Limits{Limit: 1, Window: time.Minute, Block: time.Hour}, 0)
	h := newHarness(t, withGuard(g))
	cs := h.sessionFrom(t, "192.0.2.5")
	used := h.addToken(t, func(r *token.Record) { r.UsesSpent = 1 })
	for range 3 {
		wantReject(t, send(t, cs, newMail("", []string{board})), "eom", "No posting token found")
		out := send(t, cs, newMail("", []string{sub(board, used)}))
		wantReply(t, out.rcpt[0], 550, "550 5.7.1 Posting token already used")
	}
	if g.Len() != 0 {
		t.Errorf("the guard holds %d keys after no guess at all", g.Len())
	}
}
