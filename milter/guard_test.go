package milter

import (
	"net/netip"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/policy"
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
// tokens from one client address (each with another sender), that
// client's next guesses get 450 4.7.1 — but a valid token from the same
// client still passes: the guard holds back guesses, never a token holder
// behind a shared upstream.
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
	// The next guess from the client, with yet another sender: 450.
	m := newMail("", []string{sub(board, token.Generate()), ordinary})
	m.from = "e@example.net"
	out := send(t, guesser, m)
	wantReply(t, out.rcpt[0], 450, throttled)
	wantContinue(t, out.rcpt[1]) // the block is per recipient at RCPT: ordinary recipients go on

	// A valid token from the same client passes, as subaddress and header.
	valid := h.addToken(t, func(r *token.Record) { r.UsesAllowed = 10 })
	m = newMail("", []string{sub(board, valid)})
	m.from = "d@example.net"
	wantAccept(t, send(t, guesser, m), "eoh")
	wantAccept(t, send(t, guesser, newMail("", []string{board}, field{"X-Restricted-Token", valid})), "eoh")
	h.waitLog(t, "recipient deferred", "reason=throttled", "code=450")
}

// TestTrustedUpstreamIsNotBlocked: a client in tokens.guess_trusted_networks
// (all mail arrives from Google's servers, say) is not blocked as a whole by
// one guesser behind it; the guesser's own (client, sender) pair is.
func TestTrustedUpstreamIsNotBlocked(t *testing.T) {
	t.Parallel()
	g := guard.New(guard.Limits{Limit: 2, Window: time.Minute, Block: time.Hour}, 0)
	h := newHarness(t, withGuard(g), func(o *Options) {
		r := generation.Rules(testConfig(t, t.TempDir()))
		r.GuessTrusted = []netip.Prefix{netip.MustParsePrefix("209.85.128.0/17")}
		o.Rules = func() *policy.Rules { return r }
	})
	upstream := h.sessionFrom(t, "209.85.220.41")
	guess := func(from string) outcome {
		m := newMail("", []string{sub(board, token.Generate())})
		m.from = from
		return send(t, upstream, m)
	}
	for range 2 {
		wantReply(t, guess("mallory@example.net").rcpt[0], 550, "550 5.7.1 Unknown posting token")
	}
	wantReply(t, guess("mallory@example.net").rcpt[0], 450, throttled)
	// Another sender behind the same upstream guessing (a typo, say) is
	// judged on its own: not throttled.
	wantReply(t, guess("carol@example.net").rcpt[0], 550, "550 5.7.1 Unknown posting token")
}

// TestForgedVictimSenderDoesNotLockOutTheVictim: guesses with a forged
// envelope sender block only that (client, sender) pair; the real sender's
// valid token passes from its own client and from the forger's.
func TestForgedVictimSenderDoesNotLockOutTheVictim(t *testing.T) {
	t.Parallel()
	g := guard.New(guard.Limits{Limit: 2, Window: time.Minute, Block: time.Hour}, 0)
	h := newHarness(t, withGuard(g))
	forger := h.sessionFrom(t, "203.0.113.66")
	for range 3 {
		m := newMail(token.Generate(), []string{board})
		m.from = "victim@example.net"
		send(t, forger, m)
	}
	m := newMail(token.Generate(), []string{board})
	m.from = "victim@example.net"
	wantReply(t, send(t, forger, m).act, 450, throttled)

	valid := h.addToken(t, func(r *token.Record) { r.UsesAllowed = 10; r.Sender = "victim@example.net" })
	for _, ip := range []string{"198.51.100.7", "203.0.113.66"} {
		m := newMail(valid, []string{board})
		m.from = "victim@example.net"
		m.headers[0] = field{"From", "<victim@example.net>"}
		wantAccept(t, send(t, h.sessionFrom(t, ip), m), "eom")
	}
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
