package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

var tokenLine = regexp.MustCompile(`^[a-z2-7]{32}$`)

const testConfig = `hostname = "mx.example.org"

[store]
path = "state.db"

[tokens]
prefix = "RMTOKEN"

[[dkim]]
domain = "example.org"
selector = "rm1"
private_key_file = "dkim.pem"

[[lists]]
address = "board@example.org"
name = "Example Board"
recipients = ["alice@example.net", "bob@example.com"]
bounce_address = "board-bounces@example.org"

# No default recipients: every token names its own.
[[lists]]
address = "events@example.org"
bounce_address = "events-bounces@example.org"
`

// setup writes a configuration (with its DKIM key) into a new directory
// and returns its path.
func setup(t *testing.T, doc string) string {
	t.Helper()
	dir := t.TempDir()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dkim.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "restrictedmail.toml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// cli runs the command in-process.
func cli(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// issue runs `token issue` and returns the token it printed.
func issue(t *testing.T, args ...string) (tok, stdout string) {
	t.Helper()
	code, out, errOut := cli(append([]string{"token", "issue"}, args...)...)
	if code != exitOK {
		t.Fatalf("token issue %q: exit %d\n%s%s", args, code, out, errOut)
	}
	first, _, _ := strings.Cut(out, "\n")
	if !tokenLine.MatchString(first) {
		t.Fatalf("token issue: first line %q is not a token alone", first)
	}
	return first, out
}

// openStore opens the store of the configuration at cfgPath.
func openStore(t *testing.T, cfgPath string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(filepath.Dir(cfgPath), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func record(t *testing.T, cfgPath, tok string) token.Record {
	t.Helper()
	r, err := openStore(t, cfgPath).TokenByHash(context.Background(), token.HashOf(tok))
	if err != nil {
		t.Fatalf("the issued token is not in the store: %v", err)
	}
	return r
}

func TestTokenIssue(t *testing.T) {
	t.Parallel()
	cfg := setup(t, testConfig)
	before := time.Now().Add(-time.Second)
	tok, out := issue(t, "--config", cfg, "--list", "Board@Example.org")
	r := record(t, cfg, tok)
	if r.List != "board@example.org" || r.UsesAllowed != 1 || r.UsesSpent != 0 || r.Sender != "" || r.HideSender || len(r.Recipients) != 0 {
		t.Errorf("record %+v", r)
	}
	if r.Created.Before(before.Truncate(time.Second)) || r.Created.After(time.Now()) {
		t.Errorf("created %v", r.Created)
	}
	if got := r.Expires.Sub(r.Created); got != 72*time.Hour {
		t.Errorf("expires %v after creation, want tokens.default_ttl (72h)", got)
	}
	if !strings.Contains(out, "id "+r.ID+" ") || !strings.Contains(out, "board+<token>@example.org") || !strings.Contains(out, "X-Restricted-Token: <token>") {
		t.Errorf("output does not explain the token:\n%s", out)
	}
	if strings.Count(out, tok) != 1 {
		t.Errorf("the token appears %d times in the output, want once (its own line)", strings.Count(out, tok))
	}
	// Each issue is a new token.
	tok2, _ := issue(t, "-config", cfg, "-list", "board@example.org")
	if tok2 == tok {
		t.Error("two issues gave one token")
	}
}

func TestTokenIssueOptions(t *testing.T) {
	t.Parallel()
	cfg := setup(t, testConfig)
	dir := filepath.Dir(cfg)
	file := filepath.Join(dir, "token")
	tok, _ := issue(t, "--config="+cfg, "-list=board@example.org", "--sender", "Alice@Example.NET",
		"--ttl", "4d", "-uses", "3", "--recipient", "x@example.net", "-recipient=Y@Example.com",
		"--hide-sender", "--out", file)
	r := record(t, cfg, tok)
	if r.Sender != "alice@example.net" {
		t.Errorf("sender %q, want the key form", r.Sender)
	}
	if r.Expires.Sub(r.Created) != 96*time.Hour || r.UsesAllowed != 3 || !r.HideSender {
		t.Errorf("record %+v", r)
	}
	if strings.Join(r.Recipients, ",") != "x@example.net,Y@example.com" {
		t.Errorf("recipients %q", r.Recipients)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "RMTOKEN"+tok+"\n" {
		t.Errorf("token file %q, want prefix + token + newline", data)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %#o", fi.Mode().Perm())
	}
	// The file is what a sender attaches: finding reads it back.
	f := token.Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"}
	msg := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n" +
		"Content-Type: text/plain; name=token\r\n\r\n" + string(data) + "--b--\r\n"
	if found, err := f.Find(strings.NewReader(msg)); err != nil || found.Token != tok {
		t.Errorf("Find on the token file = %q, %v", found.Token, err)
	}

	// --ttl 0: never expires.
	tok, out := issue(t, "--config", cfg, "--list", "board@example.org", "--ttl", "0")
	if r := record(t, cfg, tok); !r.Expires.IsZero() || !strings.Contains(out, "never expires") {
		t.Errorf("--ttl 0: expires %v\n%s", r.Expires, out)
	}
}

func TestTokenIssueErrors(t *testing.T) {
	t.Parallel()
	cfg := setup(t, testConfig)
	tests := []struct {
		args []string
		code int
		text string
	}{
		{[]string{"--list", "nobody@example.org"}, exitFailure, "is not a restricted address"},
		{[]string{"--list", "not an address"}, exitFailure, "--list"},
		{[]string{"--list", "events@example.org"}, exitFailure, "--recipient is required: events@example.org has no default recipients"},
		{[]string{"--list", "board@example.org", "--sender", "bad@"}, exitFailure, "--sender"},
		{[]string{"--list", "board@example.org", "--ttl", "soon"}, exitFailure, "--ttl"},
		{[]string{"--list", "board@example.org", "--uses", "-2"}, exitFailure, "--uses"},
		{[]string{"--list", "board@example.org", "--recipient", "x@"}, exitFailure, "--recipient"},
		{[]string{"--list", "board@example.org", "--recipient", "BOARD@example.org"}, exitFailure, "is the list itself"},
		{[]string{"--list", "board@example.org", "--out", filepath.Join(cfg, "not-a-dir", "token")}, exitFailure, "writing the token file"},
		{[]string{}, exitUsage, "--list is required"},
		{[]string{"--list", "board@example.org", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"--list", "board@example.org", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{[]string{"--list", "board@example.org", "--uses", "many"}, exitUsage, "invalid value"},
	}
	for _, tt := range tests {
		args := append([]string{"token", "issue", "--config", cfg}, tt.args...)
		code, out, errOut := cli(args...)
		if code != tt.code || !strings.Contains(errOut, tt.text) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tt.args, code, errOut, tt.code, tt.text)
		}
		if out != "" {
			t.Errorf("%q: printed %q on stdout", tt.args, out)
		}
	}
	// None of them stored a token.
	if recs, err := openStore(t, cfg).Tokens(context.Background()); err != nil || len(recs) != 0 {
		t.Errorf("failed issues stored %d tokens (%v)", len(recs), err)
	}
	// A list without default recipients takes a token with its own.
	tok, _ := issue(t, "--config", cfg, "--list", "events@example.org", "--recipient", "guest@example.net")
	if r := record(t, cfg, tok); len(r.Recipients) != 1 || r.Recipients[0] != "guest@example.net" {
		t.Errorf("events token recipients %q", r.Recipients)
	}
	// A configuration with errors: nothing is done.
	bad := setup(t, strings.Replace(testConfig, "[store]", "[store]\nbogus = 1", 1))
	code, out, errOut := cli("token", "issue", "--config", bad, "--list", "board@example.org")
	if code != exitFailure || out != "" || !strings.Contains(errOut, "store.bogus: unknown key") {
		t.Errorf("bad configuration: exit %d, %q, %q", code, out, errOut)
	}
}

func TestTokenList(t *testing.T) {
	t.Parallel()
	cfg := setup(t, testConfig)
	code, out, _ := cli("token", "list", "--config", cfg)
	if code != exitOK || !strings.HasPrefix(out, "ID ") || strings.Count(out, "\n") != 1 {
		t.Errorf("empty list: exit %d\n%s", code, out)
	}
	var toks []string
	for i := 0; i < 3; i++ {
		tok, _ := issue(t, "--config", cfg, "--list", "board@example.org", "--sender", "carol@example.com")
		toks = append(toks, tok)
	}
	tok, _ := issue(t, "--config", cfg, "--list", "events@example.org", "--recipient", "a@example.net", "--recipient", "b@example.net", "--ttl", "0")
	toks = append(toks, tok)
	code, out, errOut := cli("token", "list", "-config", cfg)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, tok := range toks {
		if strings.Contains(strings.ToLower(out), tok) {
			t.Fatalf("token list shows a token:\n%s", out)
		}
		r := record(t, cfg, tok)
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, r.ID+" ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("id %s not listed:\n%s", r.ID, out)
			continue
		}
		for _, want := range []string{r.List, "1/1", "active"} {
			if !strings.Contains(line, want) {
				t.Errorf("line %q lacks %q", line, want)
			}
		}
	}
	if !strings.Contains(out, "carol@example.com") || !strings.Contains(out, "never") || !strings.Contains(out, " 2") {
		t.Errorf("sender, expiry or recipient count missing:\n%s", out)
	}
	if code, _, errOut := cli("token", "list", "--config", cfg, "extra"); code != exitUsage || !strings.Contains(errOut, "unexpected argument") {
		t.Errorf("token list extra: exit %d, %q", code, errOut)
	}
}

func TestTokenRevoke(t *testing.T) {
	t.Parallel()
	cfg := setup(t, testConfig)
	tok, _ := issue(t, "--config", cfg, "--list", "board@example.org")
	other, _ := issue(t, "--config", cfg, "--list", "board@example.org")
	r := record(t, cfg, tok)
	facts := func(tok string) policy.Facts {
		return policy.Facts{
			List:           &policy.List{Addr: address.MustParse("board@example.org")},
			HeaderRead:     true,
			BodyRead:       true,
			EnvelopeSender: address.MustParse("alice@example.net"),
			Token:          tok,
			Now:            time.Now(),
		}
	}
	db := openStore(t, cfg)
	if _, v := (policy.Checker{Tokens: db}).Check(context.Background(), facts(tok)); v.Reason != policy.Pass {
		t.Fatalf("before revoking: %v", v.Reason)
	}
	// The id after the flags, before them, with one dash or two.
	for i, args := range [][]string{
		{"token", "revoke", "--config", cfg, r.ID},
		{"token", "revoke", r.ID, "--config", cfg},
		{"token", "revoke", r.ID, "-config=" + cfg},
		{"token", "revoke", "--config", cfg, "--", r.ID},
	} {
		code, out, errOut := cli(args...)
		if code != exitOK || out != "revoked "+r.ID+"\n" {
			t.Errorf("%d %q: exit %d, %q %q", i, args, code, out, errOut)
		}
	}
	// The daemon's open store sees it at once.
	if _, v := (policy.Checker{Tokens: db}).Check(context.Background(), facts(tok)); v.Reason != policy.Revoked {
		t.Errorf("after revoking: %v, want Revoked", v.Reason)
	}
	if _, v := (policy.Checker{Tokens: db}).Check(context.Background(), facts(other)); v.Reason != policy.Pass {
		t.Errorf("the other token: %v", v.Reason)
	}
	_, out, _ := cli("token", "list", "--config", cfg)
	if !strings.Contains(out, "revoked") {
		t.Errorf("token list does not show the revocation:\n%s", out)
	}
	code, out, errOut := cli("token", "revoke", "--config", cfg, "nosuchid22")
	if code != exitFailure || out != "" || !strings.Contains(errOut, `no token with id "nosuchid22"`) {
		t.Errorf("unknown id: exit %d, %q, %q", code, out, errOut)
	}
	for _, args := range [][]string{
		{"token", "revoke", "--config", cfg},
		{"token", "revoke", "--config", cfg, "a", "b"},
	} {
		if code, _, errOut := cli(args...); code != exitUsage || !strings.Contains(errOut, "exactly one token ID") {
			t.Errorf("%q: exit %d, %q", args, code, errOut)
		}
	}
}

func TestTokenSubcommands(t *testing.T) {
	t.Parallel()
	if code, _, errOut := cli("token"); code != exitUsage || !strings.Contains(errOut, "token issue") {
		t.Errorf("token alone: exit %d, %q", code, errOut)
	}
	if code, _, errOut := cli("token", "mint"); code != exitUsage || !strings.Contains(errOut, `unknown subcommand "mint"`) {
		t.Errorf("token mint: exit %d, %q", code, errOut)
	}
	if code, out, _ := cli("token", "help"); code != exitOK || !strings.Contains(out, "token revoke") {
		t.Errorf("token help: exit %d, %q", code, out)
	}
	if code, _, errOut := cli("token", "issue", "--help"); code != exitOK || !strings.Contains(errOut, "-recipient") {
		t.Errorf("token issue --help: exit %d, %q", code, errOut)
	}
}

func TestTokenIssueWithoutSubaddress(t *testing.T) {
	t.Parallel()
	cfg := setup(t, "recipient_delimiter = \"\"\n"+testConfig)
	_, out := issue(t, "--config", cfg, "--list", "board@example.org")
	if strings.Contains(out, "<token>@") {
		t.Errorf("with the subaddress carrier off, the output still offers it:\n%s", out)
	}
	if !strings.Contains(out, "X-Restricted-Token: <token>") {
		t.Errorf("output:\n%s", out)
	}
}

// TestTokenFileReplacesWiderMode: --out over an existing world-readable
// file leaves a file only its owner can read, holding the new token.
func TestTokenFileReplacesWiderMode(t *testing.T) {
	t.Parallel()
	cfg := setup(t, testConfig)
	file := filepath.Join(t.TempDir(), "token.txt")
	if err := os.WriteFile(file, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, _ := issue(t, "--config", cfg, "--list", "board@example.org", "--out", file)
	data, err := os.ReadFile(file)
	if err != nil || string(data) != "RMTOKEN"+tok+"\n" {
		t.Fatalf("token file %q, %v", data, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %#o, want 0600", fi.Mode().Perm())
	}
}
