package tokenops

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

func newOps(t *testing.T, maxRcpts int) (*Ops, *store.DB) {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	board := &policy.List{Addr: address.MustParse("board@example.org"), Bounce: address.MustParse("b@example.org"), Name: "Board",
		Members: []string{"m1@example.net"}}
	events := &policy.List{Addr: address.MustParse("events@example.org"), Bounce: address.MustParse("e@example.org"), Name: "Events"}
	rules := policy.NewRules("+", token.Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"}, []*policy.List{board, events})
	rules.Issue = policy.IssueDefaults{TTL: 72 * time.Hour, Uses: 1}
	return New(db, Settings{Rules: rules, MaxRecipients: maxRcpts}), db
}

func TestIssueRekeyRecipients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ops, db := newOps(t, 3)
	iss, err := ops.Issue(ctx, IssueRequest{List: "Board@Example.org", Sender: "A@Example.net", Owner: "u1", ExternalRef: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if string(iss.File) != "RMTOKEN"+iss.Token+"\n" || iss.Record.Owner != "u1" || iss.Record.Sender != "a@example.net" || iss.Record.Expires.IsZero() {
		t.Errorf("issued %+v", iss)
	}
	if _, err := db.TokenByHash(ctx, token.HashOf(iss.Token)); err != nil {
		t.Errorf("the token is not stored by its hash: %v", err)
	}
	var fe *FieldError
	for _, req := range []IssueRequest{
		{List: "board@example.org", Recipients: []string{"a@x.org", "b@x.org", "c@x.org", "d@x.org"}},
		{List: "events@example.org"},
		{List: "board@example.org", Owner: strings.Repeat("x", 300)},
		{List: "board@example.org", Uses: -1},
	} {
		if _, err := ops.Issue(ctx, req); !errors.As(err, &fe) {
			t.Errorf("Issue(%+v) = %v, want a field error", req, err)
		}
	}
	if _, err := ops.Issue(ctx, IssueRequest{List: "nobody@example.org"}); !errors.Is(err, ErrUnknownList) {
		t.Errorf("unknown list: %v", err)
	}
	re, err := ops.Rekey(ctx, iss.Record.ID)
	if err != nil || re.Token == iss.Token {
		t.Fatalf("Rekey: %v", err)
	}
	if _, err := db.TokenByHash(ctx, token.HashOf(iss.Token)); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("the old secret still works: %v", err)
	}
	rec, err := ops.SetRecipients(ctx, iss.Record.ID, []string{"X@Example.net"})
	if err != nil || len(rec.Recipients) != 1 || rec.Recipients[0] != "X@example.net" {
		t.Errorf("SetRecipients: %v %v", rec.Recipients, err)
	}
	if _, err := ops.Revoke(ctx, iss.Record.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Rekey(ctx, iss.Record.ID); !errors.Is(err, token.ErrRevoked) {
		t.Errorf("Rekey of a revoked token: %v", err)
	}
	if _, err := ops.SetRecipients(ctx, "nosuchid", nil); !errors.Is(err, token.ErrNotFound) {
		t.Errorf("SetRecipients of an unknown token: %v", err)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ops, _ := newOps(t, 0)
	req := IssueRequest{List: "board@example.org", Sender: "a@example.net", Idempotency: &Idempotency{Scope: "k1", Key: "x"}}
	a, err := ops.Issue(ctx, req)
	if err != nil || a.Replayed {
		t.Fatal(err)
	}
	b, err := ops.Issue(ctx, req)
	if err != nil || !b.Replayed || b.Token != "" || b.File != nil || b.Record.ID != a.Record.ID {
		t.Errorf("replay: %+v %v", b, err)
	}
	req.Sender = "other@example.net"
	if _, err := ops.Issue(ctx, req); !errors.Is(err, store.ErrIdempotencyMismatch) {
		t.Errorf("mismatch: %v", err)
	}
	req.Idempotency = &Idempotency{Scope: "k2", Key: "x"}
	if c, err := ops.Issue(ctx, req); err != nil || c.Replayed {
		t.Errorf("another scope: %+v %v", c, err)
	}
}

func TestPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ops, _ := newOps(t, 0)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range 25 {
		// Several tokens a second: the cursor orders by id within one.
		o := ops.WithClock(func() time.Time { return now.Add(time.Duration(i/4) * time.Second) })
		if _, err := o.Issue(ctx, IssueRequest{List: "board@example.org", Owner: fmt.Sprint(i % 2)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		p, err := ops.WithClock(func() time.Time { return now }).Tokens(ctx, Query{List: "board@example.org", Cursor: cursor, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 25 || p.Counts.Active != 25 {
			t.Errorf("total %d counts %+v", p.Total, p.Counts)
		}
		for _, r := range p.Tokens {
			if seen[r.ID] {
				t.Errorf("%s twice", r.ID)
			}
			seen[r.ID] = true
		}
		if cursor = p.Next; cursor == "" {
			break
		}
		if pages > 10 {
			t.Fatal("no end")
		}
	}
	if len(seen) != 25 {
		t.Errorf("%d tokens seen", len(seen))
	}
	var fe *FieldError
	for _, q := range []Query{{List: "board@example.org", Cursor: "!!"}, {List: "board@example.org", Limit: 500}, {List: "board@example.org", State: "x"}} {
		if _, err := ops.Tokens(ctx, q); !errors.As(err, &fe) {
			t.Errorf("Tokens(%+v) = %v", q, err)
		}
	}
	c := store.Cursor{Created: now, ID: "abc"}
	if got, err := DecodeCursor(EncodeCursor(c)); err != nil || got != c {
		t.Errorf("cursor round trip: %v %v", got, err)
	}
}

func TestImportLEGO(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ops, db := newOps(t, 0)
	bad := "id,sender,token,hide_sender,recipients\n1,a@example.net,tok_1,f,\n2,,tok_2,f,\n3,b@example.net,bad token!,f,\n4,c@example.net,tok_4,maybe,\n5,d@example.net,tok_1,f,\n"
	_, err := ops.ImportLEGO(ctx, ImportRequest{List: "board@example.org", CSV: strings.NewReader(bad)})
	var rows ImportErrors
	if !errors.As(err, &rows) || len(rows) != 4 {
		t.Fatalf("bad export: %v", err)
	}
	if all, _ := db.Tokens(ctx); len(all) != 0 {
		t.Errorf("%d tokens imported from a bad export", len(all))
	}
	good := "1,A@example.net,Tok_1,t,\"{r1@example.net,r2@example.com}\"\n2,b@example.net,tok-2,false,\n"
	res, err := ops.ImportLEGO(ctx, ImportRequest{List: "board@example.org", CSV: strings.NewReader(good)})
	if err != nil || len(res.Imported) != 2 {
		t.Fatalf("import: %+v %v", res, err)
	}
	r, err := db.TokenByHash(ctx, token.HashOf("tok_1"))
	if err != nil || !r.HideSender || r.Sender != "a@example.net" || len(r.Recipients) != 2 || !r.Expires.IsZero() || r.ExternalRef != "lego:1" {
		t.Errorf("imported %+v %v", r, err)
	}
	res, err = ops.ImportLEGO(ctx, ImportRequest{List: "board@example.org", CSV: strings.NewReader(good)})
	if err != nil || res.Skipped != 2 || len(res.Imported) != 0 {
		t.Errorf("second import: %+v %v", res, err)
	}
}

func TestParseTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "72h": 72 * time.Hour, "7d": 7 * 24 * time.Hour, " 30m ": 30 * time.Minute} {
		if got, err := ParseTTL(in); err != nil || got != want {
			t.Errorf("ParseTTL(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "soon", "-1h", "-3d", "99999999d"} {
		if _, err := ParseTTL(in); err == nil {
			t.Errorf("ParseTTL(%q) accepted", in)
		}
	}
}
