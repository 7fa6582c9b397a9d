package milter

import (
	"bytes"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/token"
)

// newMail is a message from sender to rcpts: a multipart body whose token
// part carries bodyToken ("" for none), and the extra header fields (a From
// field among them replaces the default one).
func newMail(bodyToken string, rcpts []string, extra ...field) testMessage {
	ct, body := multipart("LEGOTOKEN", bodyToken)
	var hs []field
	hasFrom := false
	for _, f := range extra {
		hasFrom = hasFrom || strings.EqualFold(f.name, "From")
	}
	if !hasFrom {
		hs = append(hs, field{"From", "Poster <" + sender + ">"})
	}
	hs = append(hs, field{"Subject", "Hello"}, field{"MIME-Version", "1.0"}, field{"Content-Type", ct})
	hs = append(hs, extra...)
	return testMessage{from: sender, rcpts: rcpts, headers: hs, body: bytes.NewReader(body)}
}

func sub(list, tok string) string {
	local, domain, _ := strings.Cut(list, "@")
	return local + "+" + tok + "@" + domain
}

func TestOrdinaryMailAcceptedAtData(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cs := h.session(t)

	// The protocol: no connect, HELO or unknown events; no waiting for the
	// replies to MAIL FROM, headers and body; replies kept where the milter
	// decides; no modification action.
	for _, o := range []gomilter.OptProtocol{gomilter.OptNoConnect, gomilter.OptNoHelo, gomilter.OptNoUnknown,
		gomilter.OptNoMailReply, gomilter.OptNoHeaderReply, gomilter.OptNoBodyReply} {
		if !cs.ProtocolOption(o) {
			t.Errorf("protocol option %v not negotiated", o)
		}
	}
	for _, o := range []gomilter.OptProtocol{gomilter.OptNoRcptReply, gomilter.OptNoDataReply, gomilter.OptNoEOHReply,
		gomilter.OptNoMailFrom, gomilter.OptNoRcptTo, gomilter.OptNoData} {
		if cs.ProtocolOption(o) {
			t.Errorf("protocol option %v negotiated; the milter decides there", o)
		}
	}
	if !cs.ActionOption(gomilter.OptSetMacros) {
		t.Error("SMFIF_SETSYMLIST not negotiated: the queue id macro cannot be requested")
	}
	for _, a := range []gomilter.OptAction{gomilter.OptAddHeader, gomilter.OptChangeBody, gomilter.OptAddRcpt,
		gomilter.OptRemoveRcpt, gomilter.OptChangeHeader, gomilter.OptQuarantine, gomilter.OptChangeFrom, gomilter.OptAddRcptWithArgs} {
		if cs.ActionOption(a) {
			t.Errorf("modification action %v negotiated; the milter never modifies", a)
		}
	}

	for _, rcpts := range [][]string{
		{ordinary},
		{ordinary, "erin@example.com", "BOARD-not@example.org", "board@example.org.invalid"},
		{"board.x@example.org", "board@sub.example.org"},
	} {
		out := send(t, cs, newMail("", rcpts))
		for i, act := range out.rcpt {
			if act.Type != gomilter.ActionContinue {
				// An accept here would end the milter's part in the
				// transaction: later recipients would go unchecked.
				t.Errorf("RCPT %s: %v, want continue", rcpts[i], act)
			}
		}
		// Accepted at DATA: Postfix sends neither headers nor body.
		wantAccept(t, out, "data")
	}
	if strings.Contains(h.logs.String(), "level=INFO") {
		t.Errorf("ordinary mail logged at info:\n%s", h.logs)
	}
}

func TestOrdinaryThenRestrictedWithoutToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cs := h.session(t)
	out := send(t, cs, newMail("", []string{ordinary, board}))
	wantContinue(t, out.rcpt[0])
	wantContinue(t, out.rcpt[1])
	wantReject(t, out, "eom", "No posting token found: <board@example.org> is a restricted address")
	h.waitLog(t, "message rejected", "stage=eom", "queue_id="+testQueue, "reason=no_token",
		"list=board@example.org", "sender="+sender, "recipients=2", "code=550")
}

func TestSinglePartWithoutTokenRejectedAtEndOfHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cs := h.session(t)
	m := testMessage{from: sender, rcpts: []string{board}, headers: []field{
		{"From", sender}, {"Subject", "hi"}, {"Content-Type", "text/plain; charset=utf-8"}}}
	// No body is sent: the decision comes before it.
	wantReject(t, send(t, cs, m), "eoh", "No posting token found")
}

func TestSubaddressTokenValid(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.addToken(t, nil)
	cs := h.session(t)
	out := send(t, cs, newMail("", []string{sub(board, tok), board}))
	wantContinue(t, out.rcpt[0])
	// Decided at the end of the headers (the loop marker is checked there):
	// the body is never transferred.
	wantAccept(t, out, "eoh")
	h.waitLog(t, "restricted message accepted", "queue_id="+testQueue, "list=board@example.org", "carrier=subaddress", "recipients=2")
	if strings.Contains(h.logs.String(), tok) {
		t.Errorf("the token was logged:\n%s", h.logs)
	}
}

func TestSubaddressTokenRejectedAtRcpt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	hour := time.Now().Add(-time.Hour)
	cases := []struct {
		name, sentence, reason string
		mod                    func(*token.Record)
		unknown                bool
	}{
		{name: "unknown", unknown: true, reason: "unknown_token",
			sentence: "Unknown posting token: this message's token is not valid for <board@example.org>"},
		{name: "expired", mod: func(r *token.Record) { r.Expires = hour }, reason: "expired",
			sentence: "Posting token expired: ask for a new token to write to <board@example.org>"},
		{name: "used", mod: func(r *token.Record) { r.UsesSpent = 1 }, reason: "used_up",
			sentence: "Posting token already used: it allowed no more messages to <board@example.org>"},
		{name: "revoked", mod: func(r *token.Record) { r.Revoked = true }, reason: "revoked",
			sentence: "Posting token revoked: it no longer allows messages to <board@example.org>"},
		{name: "wrong list", mod: func(r *token.Record) { r.List = events }, reason: "wrong_list",
			sentence: "Posting token not valid for this address: it was issued for another address than <board@example.org>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := token.Generate()
			if !tc.unknown {
				h.addRecord(t, tok, tc.mod)
			}
			cs := h.session(t)
			out := send(t, cs, newMail("", []string{ordinary, sub(board, tok), "erin@example.com"}))
			wantContinue(t, out.rcpt[0])
			wantReply(t, out.rcpt[1], 550, "550 5.7.1 "+tc.sentence)
			wantContinue(t, out.rcpt[2])
			// Only that recipient was refused: the rest is ordinary mail.
			wantAccept(t, out, "data")
			h.waitLog(t, "recipient rejected", "stage=rcpt", "reason="+tc.reason, "list=board@example.org", "queue_id="+testQueue)
			if strings.Contains(h.logs.String(), tok) {
				t.Errorf("the token was logged:\n%s", h.logs)
			}
		})
	}
}

func TestSubaddressWrongSenderDecidedByFromHeader(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.addToken(t, func(r *token.Record) { r.Sender = "alice@example.net" })
	cs := h.session(t)

	// The envelope sender differs (a forwarder rewrote it), the From field
	// matches: not rejected at RCPT, accepted at the end of the headers.
	out := send(t, cs, newMail("", []string{sub(board, tok)}, field{"From", `"Alice A." <ALICE@example.net>`}))
	wantContinue(t, out.rcpt[0])
	wantAccept(t, out, "eoh")

	// Neither matches: rejected for the whole message at end of headers.
	out = send(t, cs, newMail("", []string{sub(board, tok)}, field{"From", "Mallory <mallory@example.net>"}))
	wantContinue(t, out.rcpt[0])
	wantReject(t, out, "eoh", "Posting token not valid for this sender: it was issued to another sender for <board@example.org>")

	// A From field that is garbage matches nothing, and breaks nothing.
	out = send(t, cs, newMail("", []string{sub(board, tok)}, field{"From", "<<<@@ not an address"}))
	wantReject(t, out, "eoh", "Posting token not valid for this sender")
}

func TestHeaderToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	valid := h.addToken(t, nil)
	eventsTok := h.addToken(t, func(r *token.Record) { r.List = events })
	cs := h.session(t)

	out := send(t, cs, newMail("", []string{board}, field{"X-Restricted-Token", valid}))
	wantAccept(t, out, "eoh")
	h.waitLog(t, "restricted message accepted", "carrier=header")

	// Header names are case-insensitive; the token is matched ignoring case.
	out = send(t, cs, newMail("", []string{board}, field{"x-restricted-TOKEN", strings.ToUpper(valid)}))
	wantAccept(t, out, "eoh")

	out = send(t, cs, newMail("", []string{board}, field{"X-Restricted-Token", token.Generate()}))
	wantReject(t, out, "eoh", "Unknown posting token: this message's token is not valid for <board@example.org>")

	out = send(t, cs, newMail("", []string{board}, field{"X-Restricted-Token", eventsTok}))
	wantReject(t, out, "eoh", "Posting token not valid for this address")

	// A header token rejects the whole message, ordinary recipients too.
	out = send(t, cs, newMail("", []string{ordinary, board}, field{"X-Restricted-Token", "nosuchtoken"}))
	wantReject(t, out, "eoh", "Unknown posting token")
}

func TestBodyTokenPart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	valid := h.addToken(t, nil)
	used := h.addToken(t, func(r *token.Record) { r.UsesSpent = 1 })
	cs := h.session(t)

	wantAccept(t, send(t, cs, newMail(valid, []string{board})), "eom")
	h.waitLog(t, "restricted message accepted", "stage=eom", "carrier=part", "queue_id="+testQueue)
	wantReject(t, send(t, cs, newMail(used, []string{ordinary, board})), "eom",
		"Posting token already used: it allowed no more messages to <board@example.org>")
	wantReject(t, send(t, cs, newMail("x"+valid, []string{board})), "eom", "Unknown posting token")
}

func TestLegoFixture(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.addRecord(t, "test_token", func(r *token.Record) { r.List = lego; r.Sender = "eirik@sylliaas.no" })
	headers, body := readEML(t, "testdata/lego-valid.eml")
	cs := h.session(t)

	// LEGO's check: the envelope sender is the bound sender.
	m := testMessage{from: "eirik@sylliaas.no", rcpts: []string{lego}, headers: headers, body: bytes.NewReader(body)}
	wantAccept(t, send(t, cs, m), "eom")

	// A forwarder rewrote the envelope sender; the From field still matches.
	m = testMessage{from: "bounces+eirik=sylliaas.no@forwarder.example", rcpts: []string{lego}, headers: headers, body: bytes.NewReader(body)}
	wantAccept(t, send(t, cs, m), "eom")
}

func TestSeveralRestrictedRecipients(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	boardTok := h.addToken(t, nil)
	eventsTok := h.addToken(t, func(r *token.Record) { r.List = events })
	cs := h.session(t)

	// Each list passes with its own carrier.
	out := send(t, cs, newMail(eventsTok, []string{sub(board, boardTok), events, board}))
	wantAccept(t, out, "eom")
	h.waitLog(t, "restricted message accepted", "list=board@example.org,events@example.org", "carrier=subaddress,part", "recipients=3")

	// One token for two lists: the second fails, and names its address.
	out = send(t, cs, newMail("", []string{board, events}, field{"X-Restricted-Token", boardTok}))
	wantReject(t, out, "eoh", "Posting token not valid for this address: it was issued for another address than <events@example.org>")

	// The reply is the first failure's.
	out = send(t, cs, newMail("", []string{events, board}))
	wantReject(t, out, "eom", "No posting token found: <events@example.org>")

	// Two recipients of one list share its state.
	out = send(t, cs, newMail("", []string{board, sub(board, boardTok)}))
	wantAccept(t, out, "eoh")
}

func TestLoopMarker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.addToken(t, nil)
	cs := h.session(t)

	out := send(t, cs, newMail("", []string{sub(board, tok)}, field{"X-Loop", "Board@Example.org"}))
	if out.stage != "eoh" {
		t.Fatalf("decided at %s, want eoh", out.stage)
	}
	wantReply(t, out.act, 554, "554 5.4.6 Mail loop detected: this message was already distributed by <board@example.org>")
	h.waitLog(t, "message rejected", "reason=loop", "list=board@example.org", "code=554")

	// Another list's marker is no loop for this one.
	out = send(t, cs, newMail("", []string{sub(board, tok)}, field{"X-Loop", events}))
	wantAccept(t, out, "eoh")
}

// TestTokenToOutsiders: a message that carries a valid token and also goes
// to recipients outside the restricted addresses is refused whole — each of
// them would receive a usable token (a one-use token too: the list's
// delivery may wait in Postfix's queue for hours while an outsider's copy
// is delivered at once). Every carrier, and Bcc (envelope only) as well.
func TestTokenToOutsiders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.addToken(t, func(r *token.Record) { r.UsesAllowed = 2 })
	cs := h.session(t)
	const why = "Posting token would reach other recipients: a message with a token for <board@example.org> must go to restricted addresses only"
	out := send(t, cs, newMail("", []string{sub(board, tok), ordinary}))
	wantContinue(t, out.rcpt[0])
	wantReject(t, out, "eoh", why)
	wantReject(t, send(t, cs, newMail("", []string{ordinary, board}, field{"X-Restricted-Token", tok})), "eoh", why)
	wantReject(t, send(t, cs, newMail(tok, []string{board, ordinary})), "eom", why)
	h.waitLog(t, "message rejected", "reason=outsiders", "code=550")
	// Restricted addresses only: accepted.
	wantAccept(t, send(t, cs, newMail(tok, []string{board})), "eom")
}
