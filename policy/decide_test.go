package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/token"
)

// TestDecideStages: what the milter may decide at each stage, and that the
// facts learnt later decide the rest.
func TestDecideStages(t *testing.T) {
	t.Parallel()
	bound := record()
	bound.Sender = "bob@example.com"
	tests := []struct {
		name string
		mod  func(*Facts)
		want Reason
	}{
		{"rcpt: no token yet", func(f *Facts) { f.HeaderRead, f.BodyRead, f.Token = false, false, "" }, Undecided},
		{"rcpt: unknown token is final", func(f *Facts) { f.HeaderRead, f.BodyRead, f.Record = false, false, nil }, Unknown},
		{"rcpt: wrong sender waits for From", func(f *Facts) { f.HeaderRead, f.BodyRead, f.Record = false, false, &bound }, Undecided},
		{"eoh: wrong sender is final", func(f *Facts) { f.Record = &bound }, WrongSender},
		{"eoh: From matches the binding", func(f *Facts) {
			f.Record, f.HeaderFrom = &bound, []address.Address{address.MustParse("Bob@Example.com")}
		}, Pass},
		{"eoh: no token, body not read", func(f *Facts) { f.BodyRead, f.Token = false, "" }, Undecided},
		{"eom: no token", func(f *Facts) { f.Token = "" }, NoToken},
		{"loop before everything", func(f *Facts) { f.Loop, f.Throttled, f.Token = true, true, "" }, Loop},
		{"loop is not known before the header", func(f *Facts) { f.Loop, f.HeaderRead = true, false }, Pass},
		{"unreadable", func(f *Facts) { f.Unreadable = true }, Malformed},
		{"throttled: an unknown token", func(f *Facts) { f.Throttled, f.Record = true, nil }, Throttled},
		{"throttled: a valid token passes all the same", func(f *Facts) { f.Throttled = true }, Pass},
		{"outsiders with a valid token", func(f *Facts) { f.Outsiders = true }, Outsiders},
		{"outsiders with an unknown token", func(f *Facts) { f.Outsiders, f.Record = true, nil }, Unknown},
		{"outsiders without a token", func(f *Facts) { f.Outsiders, f.Token = true, "" }, NoToken},
		{"no token is not throttled", func(f *Facts) { f.Throttled, f.Token = true, "" }, NoToken},
		{"internal failure", func(f *Facts) { f.Err = context.DeadlineExceeded }, TempFail},
		{"body scan failure without a token", func(f *Facts) { f.Err, f.Token = context.DeadlineExceeded, "" }, TempFail},
	}
	for _, tt := range tests {
		f := facts()
		r := record()
		f.Record = &r
		tt.mod(&f)
		if v := Decide(f); v.Reason != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, v.Reason, tt.want)
		} else if v.Final() != (tt.want != Undecided) {
			t.Errorf("%s: Final() = %v", tt.name, v.Final())
		}
	}
}

// countingGuard blocks after limit failures.
type countingGuard struct {
	fails, limit int
	keys         []string
}

func (g *countingGuard) Blocked(time.Time, ...string) bool { return g.fails >= g.limit }
func (g *countingGuard) Fail(_ time.Time, keys ...string) bool {
	g.fails++
	g.keys = keys
	return g.fails == g.limit
}

// someTokens knows one token.
type someTokens struct {
	asked int
	valid string
}

func (n *someTokens) TokenByHash(_ context.Context, h token.Hash) (token.Record, error) {
	n.asked++
	if n.valid != "" && h.Equal(token.HashOf(n.valid)) {
		return record(), nil
	}
	return token.Record{}, token.ErrNotFound
}

func TestCheckerGuard(t *testing.T) {
	t.Parallel()
	g := &countingGuard{limit: 2}
	store := &someTokens{valid: "tok"}
	c := Checker{Tokens: store, Guard: g}
	f := facts()
	f.Token = "guess"
	if _, v := c.Check(context.Background(), f, "client", "sender"); v.Reason != Unknown || v.Tripped {
		t.Fatalf("first guess: %+v", v)
	}
	if _, v := c.Check(context.Background(), f, "client", "sender"); v.Reason != Unknown || !v.Tripped {
		t.Fatalf("second guess trips the guard: %+v", v)
	}
	if strings.Join(g.keys, ",") != "client,sender" {
		t.Errorf("guard keys %v", g.keys)
	}
	if _, v := c.Check(context.Background(), f, "client", "sender"); v.Reason != Throttled {
		t.Fatalf("blocked: %+v, want Throttled", v)
	}
	// The guard holds back guesses only: the valid token of the real
	// sender, from the same client, passes.
	valid := facts()
	if _, v := c.Check(context.Background(), valid, "client", "sender"); v.Reason != Pass {
		t.Fatalf("a valid token while the keys are blocked: %+v, want Pass", v)
	}
	f.Token = ""
	if _, v := c.Check(context.Background(), f, "client", "sender"); v.Reason != NoToken {
		t.Fatalf("no token, no guess: %+v", v)
	}
}

// TestFromAddressesCharsets is the regression test of a disagreement: the
// milter's From parser knew only UTF-8, ISO-8859-1 and US-ASCII, so a
// display name in windows-1252 (or ISO-8859-15, KOI8-R) lost the address,
// and a token bound to it was refused at SMTP time but accepted after the
// queue.
func TestFromAddressesCharsets(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		"=?windows-1252?q?J=F6rg?= <alice@example.net>",
		"=?ISO-8859-15?Q?J=F8rgen_=A4?= <alice@example.net>",
		"=?koi8-r?B?8NLJ18XU?= <alice@example.net>",
		"=?utf-8?q?J=C3=B6rg?= <alice@example.net>",
		"\"Jörg\" <alice@example.net>",
		"alice@example.net",
		"Jörg <alice@example.net>,\r\n bob@example.com",
	} {
		got := FromAddresses(v)
		if len(got) == 0 || got[0].Key() != "alice@example.net" {
			t.Errorf("FromAddresses(%q) = %v", v, got)
		}
	}
	if got := FromAddresses("not an address"); len(got) != 0 {
		t.Errorf("garbage: %v", got)
	}
}

// TestGroupByList: the recipients of one list are one group, judged with
// the first subaddress token among them, in whatever position.
func TestGroupByList(t *testing.T) {
	t.Parallel()
	board := &List{Addr: address.MustParse("board@example.org")}
	events := &List{Addr: address.MustParse("events@example.org")}
	r := NewRules("+", token.Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"}, []*List{board, events})
	tok := token.Generate()
	var rs []Recipient
	for _, a := range []string{"board+a.b@example.org", "x@example.net", "events@example.org", "board+" + tok + "@example.org", "Board@Example.org"} {
		rc, err := r.Resolve(a)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, rc)
	}
	gs := GroupByList(rs)
	if len(gs) != 2 || gs[0].List != board || gs[1].List != events {
		t.Fatalf("groups %+v", gs)
	}
	if len(gs[0].Rcpts) != 3 || gs[0].Token != strings.ToLower(tok) && gs[0].Token != tok {
		t.Errorf("board group: %d recipients, token %q", len(gs[0].Rcpts), gs[0].Token)
	}
	if gs[1].Token != "" {
		t.Errorf("events group token %q", gs[1].Token)
	}
}
