package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func board() address.Address { return address.MustParse("board@example.org") }

// record is a valid record for board@example.org, bound to no sender.
func record() token.Record {
	return token.Record{
		ID:          "abcdefghij",
		Hash:        token.HashOf("tok"),
		List:        "board@example.org",
		Created:     now.Add(-time.Hour),
		Expires:     now.Add(time.Hour),
		UsesAllowed: 1,
	}
}

func facts() Facts {
	return Facts{
		List:           &List{Addr: board()},
		HeaderRead:     true,
		BodyRead:       true,
		EnvelopeSender: address.MustParse("alice@example.net"),
		HeaderFrom:     []address.Address{address.MustParse("alice@example.net")},
		Token:          "tok",
		Now:            now,
	}
}

// judge decides f with rec as the token's record.
func judge(f Facts, rec *token.Record) Verdict {
	f.Record = rec
	return Decide(f)
}

// check is Checker.Check without a guard, returning the record on a pass.
func check(ctx context.Context, tokens Tokens, f Facts) (Verdict, *token.Record) {
	f, v := Checker{Tokens: tokens}.Check(ctx, f)
	if !v.OK() {
		return v, nil
	}
	return v, f.Record
}

func TestJudge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		facts  func(*Facts)
		record func(*token.Record) // nil record when it sets nothing and unknown is set
		nilRec bool
		want   Reason
	}{
		{name: "pass", want: Pass},
		{name: "no token", facts: func(f *Facts) { f.Token = "" }, nilRec: true, want: NoToken},
		{name: "no token even with a record", facts: func(f *Facts) { f.Token = "" }, want: NoToken},
		{name: "unknown", nilRec: true, want: Unknown},
		{name: "wrong list", record: func(r *token.Record) { r.List = "events@example.org" }, want: WrongList},
		{name: "list compared by key", facts: func(f *Facts) { f.List = &List{Addr: address.MustParse("BOARD@Example.ORG")} }, want: Pass},
		{name: "revoked", record: func(r *token.Record) { r.Revoked = true }, want: Revoked},
		{name: "expired", record: func(r *token.Record) { r.Expires = now }, want: Expired},
		{name: "expired long ago", record: func(r *token.Record) { r.Expires = now.Add(-48 * time.Hour) }, want: Expired},
		{name: "never expires", record: func(r *token.Record) { r.Expires = time.Time{} }, want: Pass},
		{name: "used up", record: func(r *token.Record) { r.UsesSpent = 1 }, want: UsedUp},
		{name: "uses left", record: func(r *token.Record) { r.UsesAllowed, r.UsesSpent = 3, 2 }, want: Pass},
		{name: "sender bound, envelope matches", record: func(r *token.Record) { r.Sender = "alice@example.net" }, want: Pass},
		{
			name:   "sender bound, envelope matches in another case",
			facts:  func(f *Facts) { f.EnvelopeSender = address.MustParse("ALICE@Example.NET"); f.HeaderFrom = nil },
			record: func(r *token.Record) { r.Sender = "alice@example.net" },
			want:   Pass,
		},
		{
			name: "sender bound, From matches, envelope rewritten by a forwarder",
			facts: func(f *Facts) {
				f.EnvelopeSender = address.MustParse("bounces+srs=x@groups.example.com")
				f.HeaderFrom = []address.Address{address.MustParse("Alice@EXAMPLE.net")}
			},
			record: func(r *token.Record) { r.Sender = "alice@example.net" },
			want:   Pass,
		},
		{
			name: "sender bound, second From address matches",
			facts: func(f *Facts) {
				f.EnvelopeSender = address.Address{}
				f.HeaderFrom = []address.Address{address.MustParse("bob@example.com"), address.MustParse("alice@example.net")}
			},
			record: func(r *token.Record) { r.Sender = "alice@example.net" },
			want:   Pass,
		},
		{
			name:   "sender bound, neither matches",
			facts:  func(f *Facts) { f.HeaderFrom = []address.Address{address.MustParse("mallory@example.com")} },
			record: func(r *token.Record) { r.Sender = "bob@example.com" },
			want:   WrongSender,
		},
		{
			name:   "sender bound, null envelope sender and no From",
			facts:  func(f *Facts) { f.EnvelopeSender = address.Address{}; f.HeaderFrom = nil },
			record: func(r *token.Record) { r.Sender = "alice@example.net" },
			want:   WrongSender,
		},
		{
			name:   "sender bound, subaddress is another sender",
			facts:  func(f *Facts) { f.EnvelopeSender = address.MustParse("alice+x@example.net"); f.HeaderFrom = nil },
			record: func(r *token.Record) { r.Sender = "alice@example.net" },
			want:   WrongSender,
		},
		{
			name:  "unbound, null sender",
			facts: func(f *Facts) { f.EnvelopeSender = address.Address{}; f.HeaderFrom = nil },
			want:  Pass,
		},
		// The order of the checks: the list first, then the token's state,
		// the sender last.
		{
			name:   "wrong list and revoked",
			record: func(r *token.Record) { r.List = "events@example.org"; r.Revoked = true },
			want:   WrongList,
		},
		{
			name:   "revoked and expired",
			record: func(r *token.Record) { r.Revoked = true; r.Expires = now.Add(-time.Hour) },
			want:   Revoked,
		},
		{
			name:   "expired and used up",
			record: func(r *token.Record) { r.Expires = now.Add(-time.Hour); r.UsesSpent = 1 },
			want:   Expired,
		},
		{
			name:   "used up and wrong sender",
			record: func(r *token.Record) { r.UsesSpent = 1; r.Sender = "bob@example.com" },
			want:   UsedUp,
		},
	}
	for _, tt := range tests {
		f := facts()
		if tt.facts != nil {
			tt.facts(&f)
		}
		r := record()
		if tt.record != nil {
			tt.record(&r)
		}
		rec := &r
		if tt.nilRec {
			rec = nil
		}
		v := judge(f, rec)
		if v.Reason != tt.want {
			t.Errorf("%s: judge = %v, want %v", tt.name, v.Reason, tt.want)
		}
		if v.OK() != (tt.want == Pass) || v.Temporary() {
			t.Errorf("%s: OK %v, Temporary %v", tt.name, v.OK(), v.Temporary())
		}
		if v.List != f.List.Addr.String() {
			t.Errorf("%s: List = %q", tt.name, v.List)
		}
	}
}

func TestReplies(t *testing.T) {
	t.Parallel()
	list := "board@example.org"
	for _, r := range []Reason{NoToken, Unknown, Expired, UsedUp, Revoked, WrongSender, WrongList} {
		rep := Verdict{Reason: r, List: list}.Reply()
		if rep.Code != 550 || rep.Enhanced != [3]int{5, 7, 1} {
			t.Errorf("%v: reply %v, want 550 5.7.1", r, rep)
		}
		if !strings.Contains(rep.Text, "<"+list+">") {
			t.Errorf("%v: reply %q does not name the list", r, rep.Text)
		}
		if !strings.HasPrefix(rep.String(), "550 5.7.1 ") {
			t.Errorf("%v: String() = %q", r, rep.String())
		}
	}
	sentences := map[Reason]string{
		NoToken: "No posting token found", Unknown: "Unknown posting token", Expired: "expired",
		UsedUp: "already used", Revoked: "revoked", WrongSender: "not valid for this sender",
		WrongList: "not valid for this address",
	}
	seen := map[string]Reason{}
	for r, want := range sentences {
		text := Verdict{Reason: r, List: list}.Reply().Text
		if !strings.Contains(text, want) {
			t.Errorf("%v: %q does not say %q", r, text, want)
		}
		if other, dup := seen[text]; dup {
			t.Errorf("%v and %v have the same reply", r, other)
		}
		seen[text] = r
	}
	loop := Verdict{Reason: Loop, List: list}.Reply()
	if loop.Code != 554 || loop.Enhanced != [3]int{5, 4, 6} || !strings.Contains(loop.Text, "<"+list+">") {
		t.Errorf("loop: %v", loop)
	}
	bad := Verdict{Reason: Malformed, List: list}.Reply()
	if bad.Code != 554 || bad.Enhanced != [3]int{5, 6, 0} || !strings.Contains(bad.Text, "<"+list+">") {
		t.Errorf("malformed: %v", bad)
	}
	if bad := (Verdict{Reason: Malformed}).Reply(); strings.Contains(bad.Text, "<>") {
		t.Errorf("malformed without a list names an empty address: %v", bad)
	}
	pass := Verdict{Reason: Pass, List: list}.Reply()
	if pass.Code != 250 || pass.String() != "250 2.0.0 OK" {
		t.Errorf("pass: %v", pass)
	}
	temp := Verdict{Reason: TempFail, List: list, Cause: errors.New("database is locked at /var/lib/x.db")}.Reply()
	if temp.Code != 451 || temp.Enhanced != [3]int{4, 3, 0} {
		t.Errorf("tempfail: %v", temp)
	}
	if strings.Contains(temp.Text, "locked") || strings.Contains(temp.Text, "/var/lib") {
		t.Errorf("tempfail reply shows the cause: %q", temp.Text)
	}
	// Every reply is one line of printable ASCII, as SMTP needs.
	for r := Pass; r <= TempFail+1; r++ {
		text := Verdict{Reason: r, List: list}.Reply().String()
		for i := 0; i < len(text); i++ {
			if text[i] < ' ' || text[i] > '~' {
				t.Errorf("%v: reply %q has byte %#x", r, text, text[i])
			}
		}
	}
}

func TestReasonString(t *testing.T) {
	t.Parallel()
	names := map[string]bool{}
	for r := Pass; r <= TempFail; r++ {
		s := r.String()
		if s == "" || strings.HasPrefix(s, "reason(") || names[s] {
			t.Errorf("Reason(%d).String() = %q", int(r), s)
		}
		names[s] = true
	}
	if got := Reason(99).String(); got != "reason(99)" {
		t.Errorf("Reason(99).String() = %q", got)
	}
	if Pass.String() != "pass" || WrongSender.String() != "wrong_sender" || TempFail.String() != "tempfail" {
		t.Error("stable names changed")
	}
}

func TestLogValue(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("verdict", "verdict", Verdict{Reason: TempFail, List: "board@example.org", Cause: errors.New("disk I/O error")})
	for _, want := range []string{"verdict.reason=tempfail", "verdict.list=board@example.org", `verdict.cause="disk I/O error"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("log %q lacks %q", b.String(), want)
		}
	}
}

// failing is a policy.Tokens whose store is down.
type failing struct{ err error }

func (f failing) TokenByHash(context.Context, token.Hash) (token.Record, error) {
	return token.Record{}, f.err
}

func TestCheckStoreFailure(t *testing.T) {
	t.Parallel()
	cause := fmt.Errorf("looking up token: %w", errors.New("database disk image is malformed"))
	v, rec := check(context.Background(), failing{cause}, facts())
	if v.Reason != TempFail || !v.Temporary() || v.OK() || rec != nil {
		t.Fatalf("Check with a failing store = %v, %v; want TempFail", v.Reason, rec)
	}
	if !errors.Is(v.Cause, cause) {
		t.Errorf("Cause = %v, want the store's error", v.Cause)
	}
	rep := v.Reply()
	if rep.Code != 451 || rep.Enhanced != [3]int{4, 3, 0} || strings.Contains(rep.String(), "malformed") {
		t.Errorf("reply %q", rep)
	}
	// No token: the store is not asked, so its failure does not matter.
	f := facts()
	f.Token = ""
	if v, _ := check(context.Background(), failing{cause}, f); v.Reason != NoToken {
		t.Errorf("no token with a failing store: %v", v.Reason)
	}
	// A store that reports ErrNotFound, wrapped, means Unknown.
	if v, _ := check(context.Background(), failing{fmt.Errorf("x: %w", token.ErrNotFound)}, facts()); v.Reason != Unknown {
		t.Errorf("wrapped ErrNotFound: %v", v.Reason)
	}
}

func TestCheckWithStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	issue := func(mod func(*token.Record)) string {
		tok := token.Generate()
		r := record()
		r.ID, r.Hash = token.NewID(), token.HashOf(tok)
		if mod != nil {
			mod(&r)
		}
		if err := db.AddToken(ctx, r); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := issue(nil)
	bound := issue(func(r *token.Record) { r.Sender = "bob@example.com" })
	revoked := issue(func(r *token.Record) { r.Revoked = true })
	expired := issue(func(r *token.Record) { r.Expires = now.Add(-time.Minute) })
	used := issue(func(r *token.Record) { r.UsesSpent = 1 })
	other := issue(func(r *token.Record) { r.List = "events@example.org" })

	tests := []struct {
		tok  string
		want Reason
	}{
		{good, Pass},
		{strings.ToUpper(good), Pass},
		{"", NoToken},
		{token.Generate(), Unknown},
		{bound, WrongSender},
		{revoked, Revoked},
		{expired, Expired},
		{used, UsedUp},
		{other, WrongList},
	}
	for _, tt := range tests {
		f := facts()
		f.Token = tt.tok
		v, rec := check(ctx, db, f)
		if v.Reason != tt.want {
			t.Errorf("Check(%s) = %v, want %v", tt.want, v.Reason, tt.want)
		}
		if (rec != nil) != (tt.want == Pass) {
			t.Errorf("Check(%s) record %v", tt.want, rec)
		}
		if rec != nil && !rec.Hash.Equal(token.HashOf(good)) {
			t.Errorf("Check returned the record of another token")
		}
	}
	// Check does not spend.
	f := facts()
	f.Token = good
	for i := 0; i < 3; i++ {
		if v, _ := check(ctx, db, f); !v.OK() {
			t.Fatalf("Check #%d = %v: checking spent the token", i+1, v.Reason)
		}
	}
	// Spending it through the store, then checking, is UsedUp.
	rec, err := db.TokenByHash(ctx, token.HashOf(good))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Spend(ctx, rec.ID, "d1", now); err != nil {
		t.Fatal(err)
	}
	if v, _ := check(ctx, db, f); v.Reason != UsedUp {
		t.Errorf("after spending: %v", v.Reason)
	}
	_, err = db.Spend(ctx, rec.ID, "d2", now)
	if v := FromSpendError(f.List.Addr.String(), err); v.Reason != UsedUp {
		t.Errorf("FromSpendError(store's used-up error) = %v", v.Reason)
	}
}

func TestFromSpendError(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("spending token x for delivery y: %w", err) }
	tests := []struct {
		err  error
		want Reason
	}{
		{nil, Pass},
		{wrap(token.ErrUsedUp), UsedUp},
		{wrap(token.ErrRevoked), Revoked},
		{wrap(token.ErrExpired), Expired},
		{wrap(token.ErrNotFound), Unknown},
		{token.ErrUsedUp, UsedUp},
		{errors.New("database is locked"), TempFail},
		{context.DeadlineExceeded, TempFail},
	}
	for _, tt := range tests {
		v := FromSpendError("board@example.org", tt.err)
		if v.Reason != tt.want || v.List != "board@example.org" {
			t.Errorf("FromSpendError(%v) = %v for %q, want %v", tt.err, v.Reason, v.List, tt.want)
		}
		if tt.want == TempFail {
			if v.Cause != tt.err || v.Reply().Code != 451 {
				t.Errorf("FromSpendError(%v): Cause %v, reply %v", tt.err, v.Cause, v.Reply())
			}
		} else if v.Cause != nil {
			t.Errorf("FromSpendError(%v): Cause %v on a refusal", tt.err, v.Cause)
		}
	}
}

func TestIsLoop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{"board@example.org"}, true},
		{[]string{"<BOARD@Example.org>"}, true},
		{[]string{" board@example.org "}, true},
		{[]string{"events@example.org", "board@example.org"}, true},
		{[]string{"events@example.org"}, false},
		{[]string{"board@example.org.evil"}, false},
		{[]string{"board+x@example.org"}, false},
		{[]string{"not an address", ""}, false},
	}
	for _, tt := range tests {
		if got := IsLoop(tt.values, board()); got != tt.want {
			t.Errorf("IsLoop(%q) = %v, want %v", tt.values, got, tt.want)
		}
	}
}
