package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/internal/pgtest"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestStoreCopy: `store copy` moves the tokens a host issued into
// PostgreSQL, says what it copied (and that web sessions are not), and a
// second run copies nothing;
// a configuration with store.url is then served by the copy.
func TestStoreCopy(t *testing.T) {
	t.Parallel()
	cfg := setup(t, testConfig)
	tok, _ := issue(t, "--config", cfg, "--list", "board@example.org", "--uses", "2")
	url := pgtest.Shared(t).NewDB(t)

	code, out, errOut := cli("store", "copy", "--config", cfg, "--to", url)
	if code != exitOK {
		t.Fatalf("store copy: exit %d\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^tokens +1 copied +0 already there +0 conflicts$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^web_sessions +short-lived: not copied`).MatchString(out) {
		t.Errorf("first copy:\n%s", out)
	}
	code, out, errOut = cli("store", "copy", "--config", cfg, "--to", url)
	if code != exitOK || !regexp.MustCompile(`(?m)^tokens +0 copied +1 already there +0 conflicts$`).MatchString(out) {
		t.Errorf("second copy: exit %d\n%s%s", code, out, errOut)
	}

	pg, err := store.OpenPostgres(context.Background(), store.PostgresOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if r, err := pg.TokenByHash(context.Background(), token.HashOf(tok)); err != nil || r.UsesAllowed != 2 {
		t.Errorf("copied token: %+v, %v", r, err)
	}

	// Usage errors.
	if code, _, errOut := cli("store", "copy", "--config", cfg); code != exitUsage || !strings.Contains(errOut, "--to") {
		t.Errorf("without --to: exit %d %q", code, errOut)
	}
	pgCfg := setup(t, strings.Replace(testConfig, `path = "state.db"`, `url = "`+url+`"`, 1))
	if code, _, errOut := cli("store", "copy", "--config", pgCfg, "--to", url); code != exitFailure || !strings.Contains(errOut, "store.url") {
		t.Errorf("from a PostgreSQL configuration: exit %d %q", code, errOut)
	}
	// The PostgreSQL configuration serves the token commands.
	if code, out, errOut := cli("token", "list", "--config", pgCfg); code != exitOK || !strings.Contains(out, r0(t, pg, tok)) {
		t.Errorf("token list on PostgreSQL: exit %d\n%s%s", code, out, errOut)
	}
}

func r0(t *testing.T, db *store.DB, tok string) string {
	t.Helper()
	r, err := db.TokenByHash(context.Background(), token.HashOf(tok))
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}
