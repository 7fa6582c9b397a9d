package token

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	tokenRE = regexp.MustCompile(`^[a-z2-7]{32}$`)
	idRE    = regexp.MustCompile(`^[a-z2-7]{10}$`)
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	const draws = 20000
	seen := make(map[string]bool, draws)
	var letters [256]int
	for i := 0; i < draws; i++ {
		tok := Generate()
		if !tokenRE.MatchString(tok) {
			t.Fatalf("Generate() = %q, want 32 characters of [a-z2-7]", tok)
		}
		if seen[tok] {
			t.Fatalf("Generate() repeated %q after %d draws", tok, i)
		}
		seen[tok] = true
		for j := 0; j < len(tok); j++ {
			letters[tok[j]]++
		}
	}
	// All 32 symbols appear: the encoding uses the whole alphabet, so a
	// token carries 5 bits per character (160 bits in all).
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyz234567") {
		if letters[c] == 0 {
			t.Errorf("symbol %q never appeared in %d tokens", c, draws)
		}
	}
	// A token survives in an address local part and as a subaddress.
	if leadingToken([]byte(Generate())) == "" {
		t.Error("a generated token is not accepted by finding")
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	const draws = 20000
	seen := make(map[string]bool, draws)
	for i := 0; i < draws; i++ {
		id := NewID()
		if !idRE.MatchString(id) {
			t.Fatalf("NewID() = %q, want 10 characters of [a-z2-7]", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q after %d draws", id, i)
		}
		seen[id] = true
	}
}

func TestHashOf(t *testing.T) {
	t.Parallel()
	tok := Generate()
	h := HashOf(tok)
	if !h.Equal(HashOf(strings.ToUpper(tok))) || !h.Equal(HashOf(tok[:5]+strings.ToUpper(tok[5:]))) {
		t.Error("HashOf is case-sensitive; tokens are matched case-insensitively")
	}
	if h != HashOf(strings.ToUpper(tok)) {
		t.Error("HashOf of two spellings differs byte-wise")
	}
	if h.Equal(HashOf(Generate())) {
		t.Error("two tokens have one hash")
	}
	if h.Equal(HashOf(tok + "x")) {
		t.Error("a longer token has the same hash")
	}
	var zero Hash
	if h.Equal(zero) || !zero.Equal(Hash{}) {
		t.Error("Equal on the zero hash")
	}
	// LEGO's fixture token, as found: mixed characters are fine.
	if !HashOf("Test_Token").Equal(HashOf("test_token")) {
		t.Error("HashOf(Test_Token) != HashOf(test_token)")
	}
	// The hash is not the token.
	if strings.Contains(string(h[:]), tok) {
		t.Error("hash contains the token")
	}
}

func TestRecord(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		r        Record
		usesLeft int
		expired  bool
	}{
		{Record{UsesAllowed: 1}, 1, false},
		{Record{UsesAllowed: 1, UsesSpent: 1}, 0, false},
		{Record{UsesAllowed: 3, UsesSpent: 1}, 2, false},
		{Record{UsesAllowed: 1, UsesSpent: 5}, 0, false},
		{Record{UsesAllowed: 1, Expires: now}, 1, true},
		{Record{UsesAllowed: 1, Expires: now.Add(-time.Second)}, 1, true},
		{Record{UsesAllowed: 1, Expires: now.Add(time.Second)}, 1, false},
	}
	for i, tt := range tests {
		if got := tt.r.UsesLeft(); got != tt.usesLeft {
			t.Errorf("%d: UsesLeft = %d, want %d", i, got, tt.usesLeft)
		}
		if got := tt.r.Expired(now); got != tt.expired {
			t.Errorf("%d: Expired = %v, want %v", i, got, tt.expired)
		}
	}
}

func TestFileContent(t *testing.T) {
	t.Parallel()
	if got := string(FileContent("LEGOTOKEN", "test_token")); got != "LEGOTOKENtest_token\n" {
		t.Errorf("FileContent = %q", got)
	}
}

func TestFoundNeverShowsToken(t *testing.T) {
	t.Parallel()
	tok := Generate()
	for _, c := range []Carrier{CarrierSubaddress, CarrierHeader, CarrierPart} {
		f := Found{Token: tok, Carrier: c}
		if !f.OK() {
			t.Errorf("%v: OK() false", c)
		}
		for _, s := range []string{f.String(), fmt.Sprint(f), fmt.Sprintf("%v %+v", f, f), f.LogValue().String()} {
			if strings.Contains(s, tok) {
				t.Errorf("%v: %q shows the token", c, s)
			}
			if !strings.Contains(s, c.String()) {
				t.Errorf("%q does not name the carrier %v", s, c)
			}
		}
		var b strings.Builder
		slog.New(slog.NewJSONHandler(&b, nil)).Info("found", "found", f)
		if strings.Contains(b.String(), tok) {
			t.Errorf("structured log shows the token: %s", b.String())
		}
	}
	if (Found{}).OK() || (Found{}).String() != "no token" {
		t.Error("zero Found")
	}
	names := map[Carrier]string{CarrierNone: "none", CarrierSubaddress: "subaddress", CarrierHeader: "header", CarrierPart: "part", Carrier(42): "none"}
	for c, want := range names {
		if c.String() != want {
			t.Errorf("Carrier(%d).String() = %q, want %q", int(c), c.String(), want)
		}
	}
}

func TestLeadingToken(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"abc123":                         "abc123",
		"test_token\n":                   "test_token",
		"a-b_C9 rest":                    "a-b_C9",
		"":                               "",
		" abc":                           "",
		"tok\r\n":                        "tok",
		strings.Repeat("a", MaxLength):   strings.Repeat("a", MaxLength),
		strings.Repeat("a", MaxLength+1): "",
		"abc.def":                        "abc",
		"ü":                              "",
	}
	for in, want := range tests {
		if got := leadingToken([]byte(in)); got != want {
			t.Errorf("leadingToken(%q) = %q, want %q", in, got, want)
		}
	}
}
