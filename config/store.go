package config

import (
	"net/url"
	"os"
	"time"
)

// store checks [store]: exactly one of path (SQLite) and url (PostgreSQL).
// path has a default, so url set alone means PostgreSQL and clears it; a
// file that sets both is refused.
func (v *validator) store() {
	s := &v.cfg.Store
	if s.URL == "" {
		if s.Path == "" {
			v.addf("store.path", "must name the database file (or set store.url for PostgreSQL)")
		}
		s.Path = v.path(s.Path)
		return
	}
	_, pathSet := v.lines["store.path"]
	if v.lines == nil { // a configuration built in code
		pathSet = s.Path != DefaultStorePath && s.Path != ""
	}
	if pathSet {
		v.addf("store.url", "set store.path (SQLite, one host) or store.url (PostgreSQL, several hosts), not both")
	}
	s.Path = ""
	u, err := url.Parse(s.URL)
	switch {
	case err != nil:
		// url's error quotes the URL, password included: say less.
		v.addf("store.url", "is not a URL")
		return
	case u.Scheme != "postgres" && u.Scheme != "postgresql":
		v.addf("store.url", "must be a postgres:// URL, not %s:", u.Scheme)
	}
	if _, ok := u.User.Password(); ok || u.Query().Has("password") {
		v.warnf("store.url", "holds a password, which `check-config` and ps may show; use store.password_file or PGPASSWORD")
	}
	if s.PasswordFile != "" {
		s.PasswordFile = v.path(s.PasswordFile)
		v.secretFile("store.password_file", s.PasswordFile)
		if _, err := os.ReadFile(s.PasswordFile); err != nil {
			v.addf("store.password_file", "cannot read: %v", err)
		}
	}
	v.positive("store.max_open_conns", int64(s.MaxOpenConns))
	v.atLeast("store.connect_timeout", s.ConnectTimeout.D(), time.Second)
	v.atLeast("store.statement_timeout", s.StatementTimeout.D(), time.Second)
}

func (v *validator) atLeast(key string, d, least time.Duration) {
	if d < least {
		v.addf(key, "must be at least %s, not %s", least, d)
	}
}

// redactURL is a PostgreSQL URL without its password (in the user info or
// the password parameter), for a reload's log line.
func redactURL(s string) string {
	if s == `""` {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(a URL that does not parse)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
