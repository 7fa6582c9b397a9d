package config

import (
	"strings"
	"testing"
	"time"
)

func TestStoreSection(t *testing.T) {
	t.Parallel()
	withoutPath := strings.Replace(minimal, "path = \"state.db\"\n", "", 1)
	pg := func(keys string) string {
		return strings.Replace(withoutPath, "[store]\n", "[store]\n"+keys+"\n", 1)
	}

	// url alone: PostgreSQL, with the defaults; path is cleared.
	cfg := mustLoad(t, pg(`url = "postgres://rm@db.example.org/rm?sslmode=verify-full"`))
	if cfg.Store.Path != "" || cfg.Store.MaxOpenConns != 10 || cfg.Store.ConnectTimeout.D() != 5*time.Second ||
		cfg.Store.StatementTimeout.D() != 10*time.Second || cfg.SpoolDir() != "/var/lib/restrictedmail/spool" {
		t.Errorf("PostgreSQL store = %+v, spool %s", cfg.Store, cfg.SpoolDir())
	}
	// Neither: the default SQLite path.
	if cfg := mustLoad(t, withoutPath); cfg.Store.Path != DefaultStorePath || cfg.Store.URL != "" {
		t.Errorf("default store = %+v", cfg.Store)
	}

	// Both: refused, on url's line.
	_, ps, _ := load(t, pg(`url = "postgres://rm@db.example.org/rm"`+"\npath = \"state.db\""))
	if p := wantError(t, ps, "store.url", "not both"); p.Line == 0 {
		t.Error("error without a line")
	}
	_, ps, _ = load(t, pg(`url = "mysql://rm@db.example.org/rm"`))
	wantError(t, ps, "store.url", "must be a postgres:// URL")
	_, ps, _ = load(t, pg("url = \"postgres://rm@db/rm\"\nmax_open_conns = 0\nconnect_timeout = \"10ms\"\nstatement_timeout = \"0s\""))
	wantError(t, ps, "store.max_open_conns", "greater than 0")
	wantError(t, ps, "store.connect_timeout", "at least 1s")
	wantError(t, ps, "store.statement_timeout", "at least 1s")
	_, ps, _ = load(t, pg("url = \"postgres://rm@db/rm\"\npassword_file = \"missing\""))
	wantError(t, ps, "store.password_file", "cannot read")

	// A password in the URL is a warning that never shows it.
	cfg, ps, _ = load(t, pg(`url = "postgres://rm:s3cret@db/rm"`))
	if cfg == nil {
		t.Fatal(dump(ps))
	}
	wantWarning(t, ps, "store.url", "holds a password")
	if strings.Contains(dump(ps), "s3cret") {
		t.Error("a problem shows the password")
	}
}
