package config

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
)

// example returns the shipped etc/restrictedmail.toml with its file paths
// redirected into a temporary directory that holds a DKIM key.
func example(t testing.TB) (doc, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "etc", "restrictedmail.toml"))
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	key := writeFile(t, dir, "dkim-example.org.pem", keyPEM(t, "rsa2048-pkcs8"), 0o600)
	doc = string(data)
	for old, new := range map[string]string{
		"/etc/restrictedmail/dkim-example.org.pem": key,
		"/var/lib/restrictedmail/state.db":         filepath.Join(dir, "state.db"),
	} {
		if !strings.Contains(doc, `"`+old+`"`) {
			t.Fatalf("the example no longer sets %s", old)
		}
		doc = strings.ReplaceAll(doc, `"`+old+`"`, `"`+new+`"`)
	}
	return doc, dir
}

func TestShippedExample(t *testing.T) {
	t.Parallel()
	doc, dir := example(t)
	cfg, ps := Parse([]byte(doc), filepath.Join(dir, "restrictedmail.toml"))
	if len(ps) > 0 || cfg == nil {
		t.Fatalf("the shipped example has problems:\n%s", dump(ps))
	}
	if cfg.Hostname != "mx.example.org" || cfg.RecipientDelimiter != "+" {
		t.Errorf("hostname %q, delimiter %q", cfg.Hostname, cfg.RecipientDelimiter)
	}
	if cfg.Store.Path != filepath.Join(dir, "state.db") {
		t.Errorf("store.path = %q", cfg.Store.Path)
	}
	if cfg.Milter.Addr != (Listen{"tcp", "127.0.0.1:8025"}) || cfg.LMTP.Addr != (Listen{"tcp", "127.0.0.1:8024"}) {
		t.Errorf("listeners %v, %v", cfg.Milter.Addr, cfg.LMTP.Addr)
	}
	if cfg.LMTP.GiveUpAfter.D() != 96*time.Hour || cfg.Milter.ReadTimeout.D() != 5*time.Minute || cfg.Milter.WriteTimeout.D() != 30*time.Second {
		t.Errorf("durations: give_up_after %v, read_timeout %v, write_timeout %v", cfg.LMTP.GiveUpAfter, cfg.Milter.ReadTimeout, cfg.Milter.WriteTimeout)
	}
	if cfg.Milter.SocketMode != 0o660 {
		t.Errorf("socket_mode = %v", cfg.Milter.SocketMode)
	}
	if cfg.LMTP.MaxMessageSize != 52428800 || cfg.Relay.MaxRecipients != 50 || cfg.Relay.HeloName != "mx.example.org" {
		t.Errorf("lmtp.max_message_size %d, relay.max_recipients %d, helo %q", cfg.LMTP.MaxMessageSize, cfg.Relay.MaxRecipients, cfg.Relay.HeloName)
	}
	if cfg.SpoolDir() != filepath.Join(dir, "spool") {
		t.Errorf("SpoolDir = %q", cfg.SpoolDir())
	}
	if k := cfg.KeyFor("EXAMPLE.org"); k == nil || k.Signer == nil || k.Selector != "rm1" {
		t.Errorf("KeyFor(example.org) = %+v", k)
	}
	if len(cfg.Lists) != 2 {
		t.Fatalf("%d lists", len(cfg.Lists))
	}
	board := cfg.List(address.MustParse("Board@Example.org"))
	if board == nil || board.Name != "Example Board" || board.ID() != "board.example.org" ||
		board.Bounce.String() != "board-bounces@example.org" || len(board.Members) != 2 {
		t.Errorf("board list: %+v", board)
	}
	events := cfg.List(address.MustParse("events@example.org"))
	if events == nil || len(events.Members) != 0 {
		t.Errorf("events list: %+v", events)
	}
	if cfg.Tokens.Prefix != "RMTOKEN" || cfg.Tokens.Header != "X-Restricted-Token" ||
		cfg.Tokens.DefaultTTL.D() != 72*time.Hour || cfg.Tokens.DefaultUses != 1 {
		t.Errorf("tokens: %+v", cfg.Tokens)
	}
	// Loading the same text from a file gives the same result.
	path := writeFile(t, dir, "restrictedmail.toml", []byte(doc), 0o640)
	if cfg2, ps := Load(path); len(ps) > 0 || cfg2 == nil || cfg2.File != path {
		t.Errorf("Load: %v\n%s", cfg2, dump(ps))
	}
}

// TestPlantedMistakes puts three mistakes into the shipped example and
// expects exactly those three errors, each with its key and line.
func TestPlantedMistakes(t *testing.T) {
	t.Parallel()
	doc, dir := example(t)
	for old, new := range map[string]string{
		"max_recipients = 1000 ": "max_recipents = 1000 ", // unknown key, in [lmtp]
		"connections = 4 ":       `connections = "four" `, // wrong type, in [relay]
		"default_uses = 1 ":      "default_uses = 0 ",     // impossible value, in [tokens]
	} {
		if strings.Count(doc, old) != 1 {
			t.Fatalf("%q occurs %d times in the example", old, strings.Count(doc, old))
		}
		doc = strings.Replace(doc, old, new, 1)
	}
	cfg, ps := Parse([]byte(doc), filepath.Join(dir, "restrictedmail.toml"))
	if cfg != nil {
		t.Error("a configuration with errors was returned")
	}
	if len(ps) != 3 || errorCount(ps) != 3 {
		t.Fatalf("want exactly 3 errors, got:\n%s", dump(ps))
	}
	want := []Problem{
		{Key: "lmtp.max_recipents", Line: lineOf(t, doc, "max_recipents = 1000"), Message: `did you mean "max_recipients"?`},
		{Key: "relay.connections", Line: lineOf(t, doc, `connections = "four"`), Message: "must be an integer, not a string"},
		{Key: "tokens.default_uses", Line: lineOf(t, doc, "default_uses = 0"), Message: "at least 1"},
	}
	for i, w := range want {
		p := ps[i]
		if p.Key != w.Key || p.Line != w.Line || !strings.Contains(p.Message, w.Message) || p.Warning {
			t.Errorf("problem %d = %+v, want key %s on line %d saying %q", i, p, w.Key, w.Line, w.Message)
		}
		if s := p.String(); !strings.Contains(s, w.Key) || !strings.HasPrefix(s, "line ") {
			t.Errorf("String() = %q", s)
		}
	}
	if !sort.SliceIsSorted(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line }) {
		t.Errorf("problems not sorted by line:\n%s", dump(ps))
	}
	if msg := ps.Error(); strings.Count(msg, "\n") != 2 {
		t.Errorf("Error() = %q, want the three errors on three lines", msg)
	}
}

func TestProblemsSortedByLine(t *testing.T) {
	t.Parallel()
	doc := minimal + `
[relay]
tls = "ssl"
connections = 0

[lmtp]
listen = "inet:mail.example.org:24"
`
	doc = strings.Replace(doc, `hostname = "mx.example.org"`, `hostname = "not a host"`+"\nbogus = 1", 1)
	_, ps, _ := load(t, doc)
	if errorCount(ps) != 5 {
		t.Fatalf("want 5 errors:\n%s", dump(ps))
	}
	for i := 1; i < len(ps); i++ {
		if ps[i-1].Line > ps[i].Line {
			t.Errorf("problems not sorted by line:\n%s", dump(ps))
		}
	}
	wantError(t, ps, "hostname", "not a host name")
	wantError(t, ps, "bogus", "unknown key")
	wantError(t, ps, "relay.tls", `"ssl" is not one of none, starttls, tls`)
	wantError(t, ps, "relay.connections", "from 1 to 64")
	wantError(t, ps, "lmtp.listen", "not an IP address")
	if ps[0].Line != 1 || ps[1].Line != 2 {
		t.Errorf("first lines %d, %d", ps[0].Line, ps[1].Line)
	}
}

func TestSyntaxError(t *testing.T) {
	t.Parallel()
	doc := "hostname = \"mx.example.org\"\n\n[store]\npath = \"state.db\n"
	cfg, ps, _ := load(t, doc)
	if cfg != nil || len(ps) != 1 {
		t.Fatalf("want one problem:\n%s", dump(ps))
	}
	if ps[0].Line != 4 || !strings.Contains(ps[0].Message, "TOML syntax") || ps[0].Warning {
		t.Errorf("syntax problem = %+v, want line 4", ps[0])
	}
	_, ps, _ = load(t, "[lmtp]\nlisten = \"inet:127.0.0.1:8024\"\n[lmtp]\n")
	if len(ps) != 1 || ps[0].Line != 3 {
		t.Errorf("duplicate table: %s", dump(ps))
	}
	_, ps, _ = load(t, "a = 1\nb = = 2\n")
	if len(ps) != 1 || ps[0].Line != 2 {
		t.Errorf("b = = 2: %s", dump(ps))
	}
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	cfg, ps := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if cfg != nil || len(ps) != 1 || !ps.HasErrors() || !strings.Contains(ps[0].Message, "cannot read") {
		t.Errorf("Load of a missing file: %v, %s", cfg, dump(ps))
	}
}

func TestKeysAreCaseSensitive(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(minimal, "hostname =", "Hostname =", 1)
	doc = strings.Replace(doc, "[store]", "[Store]", 1)
	doc += "\n[relay]\nMax_Recipients = 10\nconections = 2\n"
	_, ps, _ := load(t, doc)
	p := wantError(t, ps, "Hostname", `did you mean "hostname"? keys are case-sensitive`)
	if p.Line != 1 {
		t.Errorf("Hostname on line %d", p.Line)
	}
	wantError(t, ps, "Store", `did you mean "store"? keys are case-sensitive`)
	p = wantError(t, ps, "relay.Max_Recipients", `did you mean "max_recipients"? keys are case-sensitive`)
	if p.Line != lineOf(t, doc, "Max_Recipients") {
		t.Errorf("relay.Max_Recipients on line %d", p.Line)
	}
	wantError(t, ps, "relay.conections", `did you mean "connections"?`)
	// Nothing close: no suggestion.
	_, ps, _ = load(t, minimal+"\n[relay]\nxyzzy = 1\n")
	if p := wantError(t, ps, "relay.xyzzy", "unknown key"); strings.Contains(p.Message, "did you mean") {
		t.Errorf("suggestion for xyzzy: %q", p.Message)
	}
}

func TestDurations(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, minimal+`
[lmtp]
give_up_after = "4d"
read_timeout = "30s"
shutdown_timeout = "1m30s"

[tokens]
default_ttl = "0s"
`)
	if cfg.LMTP.GiveUpAfter.D() != 96*time.Hour || cfg.LMTP.ReadTimeout.D() != 30*time.Second ||
		cfg.LMTP.ShutdownTimeout.D() != 90*time.Second || cfg.Tokens.DefaultTTL.D() != 0 {
		t.Errorf("durations: %v %v %v %v", cfg.LMTP.GiveUpAfter, cfg.LMTP.ReadTimeout, cfg.LMTP.ShutdownTimeout, cfg.Tokens.DefaultTTL)
	}
	doc := minimal + `
[lmtp]
read_timeout = 30
write_timeout = "soon"
give_up_after = "-4d"
shutdown_timeout = "-1s"

[milter]
socket_mode = 0o660
`
	_, ps, _ := load(t, doc)
	p := wantError(t, ps, "lmtp.read_timeout", `must be a string such as "30s", "72h" or "4d", not an integer`)
	if p.Line != lineOf(t, doc, "read_timeout = 30") {
		t.Errorf("read_timeout on line %d", p.Line)
	}
	wantError(t, ps, "lmtp.write_timeout", `"soon" is not a duration`)
	wantError(t, ps, "lmtp.give_up_after", "not a duration")
	wantError(t, ps, "lmtp.shutdown_timeout", "negative")
	wantError(t, ps, "milter.socket_mode", `must be a string such as "0660"`)

	var d Duration
	for in, want := range map[string]time.Duration{"4d": 96 * time.Hour, "0d": 0, "30s": 30 * time.Second, " 72h ": 72 * time.Hour, "1h30m": 90 * time.Minute} {
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D() != want {
			t.Errorf("Duration(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
	if err := d.UnmarshalText([]byte("106751d")); err != nil || d.D() <= 0 {
		t.Errorf("Duration(106751d) = %v, %v", d, err)
	}
	for _, in := range []string{"", "4", "d", "1.5d", "-1d", "4 days", "1w", "106752d", "200000d", "9999999999999d", "3000000h"} {
		if err := d.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("Duration(%q) = %v, want an error", in, d)
		}
	}
	var m FileMode
	if err := m.UnmarshalText([]byte("0640")); err != nil || m != 0o640 || m.String() != "0640" {
		t.Errorf("FileMode(0640) = %v, %v", m, err)
	}
	for _, in := range []string{"0999", "rw-r-----", "01777", ""} {
		if err := m.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("FileMode(%q) accepted", in)
		}
	}
}

func TestWrongTypes(t *testing.T) {
	t.Parallel()
	doc := `hostname = 42
recipient_delimiter = ["+"]
store = "state.db"

[lmtp]
max_message_size = "50M"
allowed_networks = "127.0.0.1"

[[dkim]]
domain = "example.org"
selector = "rm1"
private_key_file = "dkim.pem"

[[lists]]
address = "board@example.org"
recipients = ["alice@example.net", 7]
bounce_address = "board-bounces@example.org"
hide_sender = "yes"
`
	_, ps, _ := load(t, doc)
	for _, w := range []struct{ key, text, line string }{
		{"hostname", "must be a string, not an integer", "hostname = 42"},
		{"recipient_delimiter", "must be a string, not an array", "recipient_delimiter"},
		{"store", "must be a table ([store]), not a string", "store ="},
		{"lmtp.max_message_size", "must be an integer, not a string", "max_message_size"},
		{"lmtp.allowed_networks", "must be an array, not a string", "allowed_networks"},
		{"lists[0].recipients[1]", "must be a string, not an integer", "recipients ="},
		{"lists[0].hide_sender", "must be true or false, not a string", "hide_sender"},
	} {
		p := wantError(t, ps, w.key, w.text)
		if p.Line != lineOf(t, doc, w.line) {
			t.Errorf("%s on line %d, want %d", w.key, p.Line, lineOf(t, doc, w.line))
		}
	}
	// A table where an array of tables belongs.
	_, ps, _ = load(t, minimal+"\n[lists]\naddress = \"x@example.org\"\n")
	if len(ps) == 0 || !ps.HasErrors() {
		t.Errorf("[lists] instead of [[lists]]: %s", dump(ps))
	}
}

func TestDefaultsAndCheck(t *testing.T) {
	t.Parallel()
	cfg := Default()
	ps := Check(cfg)
	if ps.HasErrors() {
		t.Errorf("Check(Default()) has errors:\n%s", dump(ps))
	}
	wantWarning(t, ps, "lists", "no [[lists]]")
	if cfg.Relay.HeloName != cfg.Hostname {
		t.Errorf("Check did not derive helo_name: %q", cfg.Relay.HeloName)
	}
	// Check derives what Load derives.
	dir := t.TempDir()
	cfg = Default()
	cfg.File = filepath.Join(dir, "demo.toml")
	cfg.Store.Path = "state.db"
	cfg.Lists = []List{{Address: "Demo@Example.org", BounceAddress: "bounces@example.org", Recipients: []string{"a@example.net"}}}
	ps = Check(cfg)
	if ps.HasErrors() {
		t.Fatalf("Check: %s", dump(ps))
	}
	if cfg.Store.Path != filepath.Join(dir, "state.db") || cfg.List(address.MustParse("demo@example.org")) == nil {
		t.Errorf("Check did not resolve the store path (%q) or index the list", cfg.Store.Path)
	}
	if l := cfg.Lists[0]; l.Name != "Demo@Example.org" || len(l.Members) != 1 {
		t.Errorf("list defaults: %+v", l)
	}
}

// TestLineNumbers checks the lines of keys in the TOML forms that need more
// than a line-by-line look: multi-line strings and arrays, dotted keys,
// quoted keys, comments with brackets.
func TestLineNumbers(t *testing.T) {
	t.Parallel()
	doc := `relay.tls = "ssl" # [not a table]
"hostname" = 7

[store] # the database
path = "state.db"

[[dkim]]
domain = "example.org"
selector = "rm1"
private_key_file = "dkim.pem"

[[ lists ]]
address = "board@example.org"
name = """Example
[Board]
"""
recipients = [
  "alice@example.net", # a comment with ] and "quotes
  'bob@example.com',
  "bad@",
]
bounce_address = 5
hide_sender = "no"
`
	_, ps, _ := load(t, doc)
	for _, w := range []struct{ key, text, line string }{
		{"relay.tls", "not one of", `relay.tls = "ssl"`},
		{"hostname", "must be a string", `"hostname" = 7`},
		{"lists[0].name", "must be one line", `name = """Example`},
		{"lists[0].recipients[2]", `"bad@"`, `"bad@",`},
		{"lists[0].bounce_address", "must be a string", "bounce_address = 5"},
		{"lists[0].hide_sender", "must be true or false", `hide_sender = "no"`},
	} {
		p := wantError(t, ps, w.key, w.text)
		if want := lineOf(t, doc, w.line); p.Line != want {
			t.Errorf("%s on line %d, want %d", w.key, p.Line, want)
		}
	}
}

// TestCheckTwice: validating a configuration again (a reload re-checks,
// tests copy configs) derives the same members, not twice as many.
func TestCheckTwice(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.File = filepath.Join(t.TempDir(), "rm.toml")
	cfg.Lists = []List{{Address: "board@example.org", Recipients: []string{"a@example.net", "b@example.net"}, BounceAddress: "bb@example.org"}}
	for i := 0; i < 2; i++ {
		if p := Check(cfg); p.HasErrors() {
			t.Fatal(p.Error())
		}
	}
	if n := len(cfg.Lists[0].Members); n != 2 {
		t.Errorf("%d members after two checks, want 2", n)
	}
}
