package milter

import (
	"path/filepath"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/config"
)

// sessionWith opens an MTA connection whose RCPT macros are set as Postfix
// sets them: the recipient as resolved ({rcpt_addr}) and where it routes it
// ({rcpt_mailer}, {rcpt_host}).
func (h *harness) sessionWith(t testing.TB, rcptAddr, mailer, host string) *gomilter.ClientSession {
	t.Helper()
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, testQueue)
	if rcptAddr != "" {
		macros.Set(gomilter.MacroRcptAddr, rcptAddr)
	}
	macros.Set(gomilter.MacroRcptMailer, mailer)
	macros.Set(gomilter.MacroRcptHost, host)
	return h.sessionOf(t, macros)
}

// TestJudgesTheResolvedRecipient: the milter judges {rcpt_addr}, the
// recipient Postfix resolved, not the spelling typed at RCPT.
func TestJudgesTheResolvedRecipient(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Typed as Postfix's percent hack; resolved to board@.
	cs := h.sessionWith(t, board, "lmtp", "[127.0.0.1]:8024")
	wantReject(t, send(t, cs, newMail("", []string{"board%example.org@mx.example.org"})), "eom", "No posting token found: <board@example.org>")
	// Postfix quotes a local part that is no dot-atom (quote_821_local).
	tok := h.addToken(t, nil)
	cs = h.sessionWith(t, `"board+`+tok+`"@example.org`, "lmtp", "inet:127.0.0.1:8024")
	wantAccept(t, send(t, cs, newMail("", []string{"anything"})), "eoh")
}

// TestRoutedToUsFailsClosed: a recipient Postfix routes to the LMTP
// endpoint that is no list, or cannot be read, is refused at RCPT — passed
// as ordinary, it would be queued and bounced by the endpoint.
func TestRoutedToUsFailsClosed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	out := send(t, h.sessionWith(t, "stale@example.org", "lmtp", "[127.0.0.1]:8024"), newMail("", []string{"stale@example.org"}))
	wantReply(t, out.rcpt[0], 550, "550 5.1.1 Recipient is routed to the restricted-address service but is no restricted address it serves")
	out = send(t, h.sessionWith(t, "no-domain", "restrictedmail", "inet:127.0.0.1:8024"), newMail("", []string{"no-domain"}))
	wantReply(t, out.rcpt[0], 550, "550 5.1.3 ")
	// Routed elsewhere (another LMTP server, say): ordinary.
	out = send(t, h.sessionWith(t, "stale@example.org", "lmtp", "[127.0.0.1]:24"), newMail("", []string{"stale@example.org"}))
	wantAccept(t, out, "data")
	h.waitLog(t, "recipient rejected", "reason=not_served")
}

// TestBounceAddressPasses: a list's bounce address that Postfix routes to
// the endpoint — delivery reports from the null sender, with the
// delivery's tag or without — passes like ordinary mail: no token is
// asked for, and the endpoint reads it as a report.
func TestBounceAddressPasses(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, rcpt := range []string{"board-bounces+abcdefghij@example.org", "board-bounces@example.org"} {
		out := send(t, h.sessionWith(t, rcpt, "lmtp", "[127.0.0.1]:8024"), newMail("", []string{rcpt}))
		wantAccept(t, out, "data")
	}
}

// TestDeclaredAliasIsTheList: an alias declared in [[lists]] aliases (a
// virtual alias Postfix expands only after the milter) is judged as the
// list at SMTP time, with its subaddress token too.
func TestDeclaredAliasIsTheList(t *testing.T) {
	t.Parallel()
	cfg, problems := config.Parse([]byte(strings.Replace(testTOML, `bounce_address = "board-bounces@example.org"`,
		`bounce_address = "board-bounces@example.org"`+"\naliases = [\"styret@example.org\"]", 1)), filepath.Join(t.TempDir(), "r.toml"))
	if problems.HasErrors() {
		t.Fatal(problems)
	}
	h := newHarness(t, func(o *Options) { o.Rules = rulesOf(cfg) })
	wantReject(t, send(t, h.session(t), newMail("", []string{"Styret@example.org"})), "eom", "No posting token found: <board@example.org>")
	tok := h.addToken(t, nil)
	wantAccept(t, send(t, h.session(t), newMail("", []string{"styret+" + tok + "@example.org"})), "eoh")
}
