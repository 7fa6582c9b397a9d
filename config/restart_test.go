package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// reloadable lists the fields of the sections that hold restart-only
// settings which a reload does apply, each decided: a new field of these
// sections must be tagged reload:"restart" or added here (TestReloadTags).
// Derived fields (toml:"-") are named by their Go name.
var reloadable = []string{
	"milter.allowed_networks", "milter.Networks", // read per connection
	"lmtp.allowed_networks", "lmtp.Networks",
	"lmtp.give_up_after",    // read per delivery
	"lmtp.lease",            // read per delivery
	"lmtp.transport",        // read per message (the milter's rules; derived from the kept listen when unset)
	"lmtp.shutdown_timeout", // read at shutdown, from the configuration in force
	"http.allowed_networks", "http.Networks",
	// [api]: per connection and request; the certificate is read again
	// on reload (renewals), TLS on or off is checked by the daemon.
	"api.allowed_networks", "api.Networks", "api.tls_cert_file", "api.tls_key_file", "api.Certificate",
	"api.max_body_size", "api.auth_failure_limit", "api.auth_failure_window", "api.auth_failure_block", "api.auth_failure_delay",
	// [web]: read per request from the configuration in force.
	"web.base_url", "web.Base", "web.admins", "web.AdminAddrs", "web.trusted_user_header", "web.trusted_proxies", "web.Proxies",
	"web.session_lifetime", "web.sign_in_from", "web.From",
}

// restartSections are the sections checked field by field.
var restartSections = map[string]reflect.Type{
	"log":    reflect.TypeFor[Log](),
	"store":  reflect.TypeFor[Store](),
	"milter": reflect.TypeFor[Milter](),
	"lmtp":   reflect.TypeFor[LMTP](),
	"http":   reflect.TypeFor[HTTP](),
	"api":    reflect.TypeFor[API](),
	"web":    reflect.TypeFor[Web](),
}

// restartKeys returns the dotted keys tagged reload:"restart" in t, and
// fails on a tag in an array of tables, where KeepRestartOnly does not
// look, or a "with" that names no restart-only key of its table.
func restartKeys(t *testing.T, typ reflect.Type, prefix string, inArray bool) []string {
	t.Helper()
	var keys []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("toml")
		restart, with := reloadOf(f) // panics on a malformed tag
		switch {
		case restart && inArray:
			t.Errorf("%s.%s: reload tag in an array of tables, which KeepRestartOnly does not walk", prefix, f.Name)
		case restart && with != "":
			found := false
			for j := range typ.NumField() {
				g := typ.Field(j)
				if r, w := reloadOf(g); r && w == "" && g.Tag.Get("toml") == with {
					found = true
				}
			}
			if !found {
				t.Errorf("%s.%s: reload:\"restart,with=%s\" names no restart-only key of its table", prefix, f.Name, with)
			}
		case restart:
			keys = append(keys, join(prefix, name))
		case f.Type.Kind() == reflect.Struct && name != "" && name != "-":
			keys = append(keys, restartKeys(t, f.Type, join(prefix, name), inArray)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			restartKeys(t, f.Type.Elem(), join(prefix, name), true)
		}
	}
	return keys
}

// TestReloadTags makes every field of the listener, store and log sections
// a decision: restart-only (tagged) or reloadable (listed above).
func TestReloadTags(t *testing.T) {
	t.Parallel()
	restartKeys(t, reflect.TypeFor[Config](), "", false)
	for section, typ := range restartSections {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := f.Tag.Get("toml")
			if name == "-" {
				name = f.Name
			}
			key := section + "." + name
			restart, _ := reloadOf(f)
			listed := slices.Contains(reloadable, key)
			switch {
			case restart && listed:
				t.Errorf("%s is tagged restart-only and listed as reloadable", key)
			case !restart && !listed:
				t.Errorf("%s: decide whether a reload can apply it: tag it reload:\"restart\" (config/restart.go) or add it to reloadable", key)
			}
		}
	}
}

const restartBase = `
[[dkim]]
domain = "example.org"
selector = "rm1"
private_key_file = "dkim.pem"

[[lists]]
address = "board@example.org"
bounce_address = "board-bounces@example.org"
`

// restartDoc is a configuration with top (dotted keys) and one list with
// the given recipient.
func restartDoc(top, member string) string {
	if member == "" {
		member = "alice@example.net"
	}
	return "hostname = \"mx.example.org\"\n" + top + "\n" + restartBase + "recipients = [\"" + member + "\"]\n"
}

func TestKeepRestartOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "dkim.pem", keyPEM(t, "ed25519"), 0o600)
	writeFile(t, dir, "pw1", []byte("one\n"), 0o600)
	writeFile(t, dir, "pw2", []byte("two\n"), 0o600)
	parse := func(t *testing.T, doc string) *Config {
		t.Helper()
		cfg, ps := Parse([]byte(doc), filepath.Join(dir, "restrictedmail.toml"))
		if cfg == nil {
			t.Fatalf("%s\n%s", dump(ps), doc)
		}
		return cfg
	}
	type change struct{ key, inForce, ignored string }
	tests := []struct {
		name         string
		was, now     string // dotted keys of the configuration in force, of the new one
		member       string // the new one's list member
		want         []change
		wantInForce  bool // after KeepRestartOnly, the new configuration equals the one in force
		checkApplied func(*Config) bool
	}{
		// Each restart-only key, one at a time.
		{name: "log.level", now: `log.level = "debug"`, want: []change{{"log.level", "info", "debug"}}},
		{name: "log.format", now: `log.format = "json"`, want: []change{{"log.format", "text", "json"}}},
		{name: "store.path", was: `store.path = "state.db"`, now: `store.path = "other.db"`,
			want: []change{{"store.path", filepath.Join(dir, "state.db"), filepath.Join(dir, "other.db")}}},
		{name: "milter.listen", now: `milter.listen = "inet:127.0.0.1:9025"`,
			want: []change{{"milter.listen", "inet:127.0.0.1:8025", "inet:127.0.0.1:9025"}}},
		{name: "milter.socket_mode", now: `milter.socket_mode = "0600"`,
			want: []change{{"milter.socket_mode", "0660", "0600"}}},
		{name: "milter.socket_group", now: `milter.socket_group = "postfix"`,
			want: []change{{"milter.socket_group", `""`, "postfix"}}},
		{name: "milter.read_timeout", now: `milter.read_timeout = "1m"`,
			want: []change{{"milter.read_timeout", "5m0s", "1m0s"}}},
		{name: "reports.poll_interval", now: `reports.poll_interval = "1s"`,
			want: []change{{"reports.poll_interval", "5s", "1s"}}},
		{name: "milter.write_timeout", now: `milter.write_timeout = "1m"`,
			want: []change{{"milter.write_timeout", "30s", "1m0s"}}},
		{name: "lmtp.listen", now: `lmtp.listen = "unix:/run/restrictedmail/lmtp.sock"`,
			want: []change{{"lmtp.listen", "inet:127.0.0.1:8024", "unix:/run/restrictedmail/lmtp.sock"}}},
		{name: "lmtp.socket_mode", was: `lmtp.socket_mode = "0660"`, now: `lmtp.socket_mode = "0600"`,
			want: []change{{"lmtp.socket_mode", "0660", "0600"}}},
		{name: "lmtp.socket_group", was: `lmtp.socket_group = "postfix"`,
			want: []change{{"lmtp.socket_group", "postfix", `""`}}},
		{name: "lmtp.max_message_size", now: `lmtp.max_message_size = 1000`,
			want: []change{{"lmtp.max_message_size", "52428800", "1000"}}},
		{name: "lmtp.max_recipients", now: `lmtp.max_recipients = 7`,
			want: []change{{"lmtp.max_recipients", "1000", "7"}}},
		{name: "lmtp.read_timeout", now: `lmtp.read_timeout = "1m"`,
			want: []change{{"lmtp.read_timeout", "5m0s", "1m0s"}}},
		{name: "lmtp.write_timeout", now: `lmtp.write_timeout = "1m"`,
			want: []change{{"lmtp.write_timeout", "5m0s", "1m0s"}}},
		{name: "lmtp.spool_dir", now: `lmtp.spool_dir = "/srv/spool"`,
			want: []change{{"lmtp.spool_dir", "/var/lib/restrictedmail/spool", "/srv/spool"}}},
		{name: "http.listen", now: `http.listen = "inet:127.0.0.1:8026"`,
			want: []change{{"http.listen", `""`, "inet:127.0.0.1:8026"}}},

		// The spool directory is judged by the one in use.
		{name: "spool follows the kept store", was: `store.path = "state.db"`, now: `store.path = "/srv/state.db"`,
			want: []change{{"store.path", filepath.Join(dir, "state.db"), "/srv/state.db"}}},
		{name: "spool_dir written out as its default", now: `lmtp.spool_dir = "/var/lib/restrictedmail/spool"`},
		{name: "spool_dir removed", was: `lmtp.spool_dir = "/srv/spool"`,
			want: []change{{"lmtp.spool_dir", "/srv/spool", "/var/lib/restrictedmail/spool"}}},
		{name: "store.path and spool_dir removed", was: "store.path = \"/srv/state.db\"\nlmtp.spool_dir = \"/srv/rm/spool\"",
			want: []change{{"store.path", "/srv/state.db", "/var/lib/restrictedmail/state.db"}, {"lmtp.spool_dir", "/srv/rm/spool", "/var/lib/restrictedmail/spool"}}},

		// [store] with PostgreSQL.
		{name: "store.url", was: `store.url = "postgres://rm@db1/rm"`, now: `store.url = "postgres://rm@db2/rm"`,
			want: []change{{"store.url", "postgres://rm@db1/rm", "postgres://rm@db2/rm"}}},
		{name: "store.url with a password", was: `store.url = "postgres://rm:s3cret@db1/rm"`, now: `store.url = "postgres://rm@db2/rm?password=s3cret"`,
			want: []change{{"store.url", "postgres://rm:xxxxx@db1/rm", "postgres://rm@db2/rm?password=xxxxx"}}},
		{name: "SQLite to PostgreSQL", now: `store.url = "postgres://rm@db1/rm"`,
			want: []change{{"store.path", "/var/lib/restrictedmail/state.db", `""`}, {"store.url", `""`, "postgres://rm@db1/rm"}}},
		{name: "store.password_file", was: "store.url = \"postgres://rm@db1/rm\"\nstore.password_file = \"pw1\"",
			now:  "store.url = \"postgres://rm@db1/rm\"\nstore.password_file = \"pw2\"",
			want: []change{{"store.password_file", filepath.Join(dir, "pw1"), filepath.Join(dir, "pw2")}}},
		{name: "store.max_open_conns", was: `store.url = "postgres://rm@db1/rm"`, now: "store.url = \"postgres://rm@db1/rm\"\nstore.max_open_conns = 20",
			want: []change{{"store.max_open_conns", "10", "20"}}},
		{name: "store.connect_timeout", was: `store.url = "postgres://rm@db1/rm"`, now: "store.url = \"postgres://rm@db1/rm\"\nstore.connect_timeout = \"30s\"",
			want: []change{{"store.connect_timeout", "5s", "30s"}}},
		{name: "store.statement_timeout", was: `store.url = "postgres://rm@db1/rm"`, now: "store.url = \"postgres://rm@db1/rm\"\nstore.statement_timeout = \"1m\"",
			want: []change{{"store.statement_timeout", "10s", "1m0s"}}},

		// What a reload applies.
		{name: "relay.address", now: `relay.address = "127.0.0.1:2525"`,
			checkApplied: func(c *Config) bool { return c.Relay.Address == "127.0.0.1:2525" }},
		{name: "list recipients", member: "bob@example.net",
			checkApplied: func(c *Config) bool { return slices.Equal(c.Lists[0].Members, []string{"bob@example.net"}) }},
		{name: "milter.allowed_networks", now: `milter.allowed_networks = ["192.0.2.0/24"]`,
			checkApplied: func(c *Config) bool { return len(c.Milter.Networks) == 1 }},
		{name: "lmtp.shutdown_timeout", now: `lmtp.shutdown_timeout = "1m"`,
			checkApplied: func(c *Config) bool { return c.LMTP.ShutdownTimeout.String() == "1m0s" }},
		{name: "api.listen", now: `api.listen = "inet:127.0.0.1:8027"`,
			want: []change{{"api.listen", `""`, "inet:127.0.0.1:8027"}}},
		{name: "web.enabled", was: "api.listen = \"inet:127.0.0.1:8027\"\nweb.base_url = \"http://127.0.0.1:8027/\"\nweb.admins = [\"a@example.org\"]",
			now:  "api.listen = \"inet:127.0.0.1:8027\"\nweb.base_url = \"http://127.0.0.1:8027/\"\nweb.admins = [\"a@example.org\"]\nweb.enabled = true",
			want: []change{{"web.enabled", "false", "true"}}},
		{name: "lmtp.give_up_after", now: `lmtp.give_up_after = "1d"`,
			checkApplied: func(c *Config) bool { return c.LMTP.GiveUpAfter.String() == "24h0m0s" }},

		// Both at once, reported in the order of the file's sections.
		{name: "mixed", was: `lmtp.socket_group = "postfix"`,
			now:  "relay.address = \"127.0.0.1:2525\"\nlmtp.socket_group = \"mail\"\nmilter.socket_mode = \"0600\"\nhttp.listen = \"inet:127.0.0.1:8026\"\nmilter.allowed_networks = [\"192.0.2.0/24\"]",
			want: []change{{"milter.socket_mode", "0660", "0600"}, {"lmtp.socket_group", "postfix", "mail"}, {"http.listen", `""`, "inet:127.0.0.1:8026"}},
			checkApplied: func(c *Config) bool {
				return c.Relay.Address == "127.0.0.1:2525" && len(c.Milter.Networks) == 1 && c.HTTP.Addr == Listen{}
			}},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inForce := parse(t, restartDoc(tt.was, ""))
			next := parse(t, restartDoc(tt.now, tt.member))
			spool := inForce.SpoolDir()
			got := KeepRestartOnly(next, inForce)
			var gotC []change
			for _, c := range got {
				gotC = append(gotC, change{c.Key, c.InForce, c.Ignored})
				if !strings.HasPrefix(c.String(), c.Key+" changed from "+c.InForce+" to "+c.Ignored+"; restart") {
					t.Errorf("String() = %q", c)
				}
			}
			if !slices.Equal(gotC, tt.want) {
				t.Errorf("changes:\n got %q\nwant %q", gotC, tt.want)
			}
			if !reflect.DeepEqual(inForce, parse(t, restartDoc(tt.was, ""))) {
				t.Error("KeepRestartOnly modified the configuration in force")
			}
			if next.SpoolDir() != spool {
				t.Errorf("spool directory %q, want the one in force, %q", next.SpoolDir(), spool)
			}
			if tt.checkApplied == nil {
				// Only restart-only keys changed: all of them are kept,
				// derived fields (Addr) included.
				if !reflect.DeepEqual(next, inForce) {
					t.Errorf("kept configuration differs from the one in force:\n%+v\n%+v", next, inForce)
				}
			} else if !tt.checkApplied(next) {
				t.Errorf("the reloadable change was not applied: %+v", next)
			}
		})
		for _, c := range tt.want {
			covered[c.key] = true
		}
	}
	// Every restart-only key has its case.
	for _, key := range restartKeys(t, reflect.TypeFor[Config](), "", false) {
		if !covered[key] {
			t.Errorf("%s is restart-only but no case changes it", key)
		}
	}
}
