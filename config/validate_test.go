package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/address"
)

func TestParseListen(t *testing.T) {
	t.Parallel()
	good := map[string]Listen{
		"inet:127.0.0.1:8025":          {"tcp", "127.0.0.1:8025"},
		"inet:[::1]:8025":              {"tcp", "[::1]:8025"},
		"inet4:192.0.2.1:25":           {"tcp", "192.0.2.1:25"},
		"inet6:[2001:db8::1]:25":       {"tcp", "[2001:db8::1]:25"},
		"inet:localhost:8024":          {"tcp", "localhost:8024"},
		"inet:127.0.0.1:0":             {"tcp", "127.0.0.1:0"},
		"unix:/run/restrictedmail/m.s": {"unix", "/run/restrictedmail/m.s"},
		"local:/run//x/../m.sock":      {"unix", "/run/m.sock"},
	}
	for in, want := range good {
		got, err := ParseListen(in)
		if err != nil || got != want {
			t.Errorf("ParseListen(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"127.0.0.1:8025":           "unknown kind",
		"tcp:127.0.0.1:8025":       "unknown kind",
		"8025":                     "is not",
		"inet:127.0.0.1":           "missing port",
		"inet::8025":               "name the address",
		"inet:mail.example.org:25": "is not an IP address",
		"inet:127.0.0.1:http":      "is not a number",
		"inet:127.0.0.1:65536":     "is not a number",
		"inet:127.0.0.1:-1":        "is not a number",
		"unix:run/m.sock":          "absolute path",
		"unix:":                    "absolute path",
		"":                         "is not",
	}
	for in, want := range bad {
		if got, err := ParseListen(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseListen(%q) = %+v, %v; want an error with %q", in, got, err, want)
		}
	}
	loopback := map[string]bool{
		"inet:127.0.0.1:1": true, "inet:127.1.2.3:1": true, "inet:[::1]:1": true, "inet:localhost:1": true,
		"unix:/x": true, "inet:0.0.0.0:1": false, "inet:192.0.2.1:1": false, "inet:[::]:1": false,
	}
	for in, want := range loopback {
		l, err := ParseListen(in)
		if err != nil || l.IsLoopback() != want {
			t.Errorf("ParseListen(%q).IsLoopback() = %v, %v; want %v", in, l.IsLoopback(), err, want)
		}
		if err == nil && l.String() != in {
			t.Errorf("String() = %q, want %q", l.String(), in)
		}
	}
}

func TestListenValidation(t *testing.T) {
	t.Parallel()
	doc := minimal + `
[milter]
listen = "inet:mail.example.org:8025"

[lmtp]
listen = "inet:127.0.0.1"
`
	_, ps, _ := load(t, doc)
	if p := wantError(t, ps, "milter.listen", "not an IP address"); p.Line != lineOf(t, doc, "inet:mail.example.org") {
		t.Errorf("milter.listen on line %d", p.Line)
	}
	if p := wantError(t, ps, "lmtp.listen", "missing port"); p.Line != lineOf(t, doc, `"inet:127.0.0.1"`) {
		t.Errorf("lmtp.listen on line %d", p.Line)
	}
	_, ps, _ = load(t, minimal+"\n[milter]\nlisten = \"tcp:127.0.0.1:1\"\n[lmtp]\nlisten = \"unix:relative.sock\"\n")
	wantError(t, ps, "milter.listen", "unknown kind")
	wantError(t, ps, "lmtp.listen", "absolute path")

	// A non-loopback listener needs an allow-list.
	doc = minimal + "\n[milter]\nlisten = \"inet:0.0.0.0:8025\"\n[lmtp]\nlisten = \"inet:[::]:8024\"\n"
	_, ps, _ = load(t, doc)
	wantError(t, ps, "milter.listen", "reachable from the network")
	wantError(t, ps, "lmtp.listen", "reachable from the network")
	cfg := mustLoad(t, minimal+`
[milter]
listen = "inet:192.0.2.5:8025"
allowed_networks = ["192.0.2.10", "198.51.100.0/24", "2001:db8::/32"]
[lmtp]
listen = "unix:/run/restrictedmail/lmtp.sock"
`)
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	if len(cfg.Milter.Networks) != 3 || cfg.Milter.Networks[0] != want[0] || cfg.Milter.Networks[1] != want[1] || cfg.Milter.Networks[2] != want[2] {
		t.Errorf("Networks = %v", cfg.Milter.Networks)
	}
	if cfg.LMTP.Addr != (Listen{"unix", "/run/restrictedmail/lmtp.sock"}) {
		t.Errorf("lmtp addr %v", cfg.LMTP.Addr)
	}
	doc = minimal + "\n[milter]\nlisten = \"inet:0.0.0.0:8025\"\nallowed_networks = [\n  \"192.0.2.10\",\n  \"not-a-net\",\n]\n"
	_, ps, _ = load(t, doc)
	if p := wantError(t, ps, "milter.allowed_networks[1]", "not an address or a network"); p.Line != lineOf(t, doc, "not-a-net") {
		t.Errorf("allowed_networks[1] on line %d", p.Line)
	}
	// Both disabled: serve would do nothing.
	_, ps, _ = load(t, minimal+"\n[milter]\nlisten = \"\"\n[lmtp]\nlisten = \"\"\n")
	wantError(t, ps, "lmtp.listen", "both disabled")
	// One disabled is fine.
	cfg = mustLoad(t, minimal+"\n[milter]\nlisten = \"\"\n")
	if cfg.Milter.Addr != (Listen{}) {
		t.Errorf("disabled milter has address %v", cfg.Milter.Addr)
	}
}

func TestRelayValidation(t *testing.T) {
	t.Parallel()
	_, ps, _ := load(t, minimal+"\n[relay]\ntls = \"ssl\"\n")
	wantError(t, ps, "relay.tls", `"ssl" is not one of none, starttls, tls`)

	_, ps, _ = load(t, minimal+"\n[relay]\naddress = \"smtp-relay.gmail.com\"\n")
	wantError(t, ps, "relay.address", "is not host:port")
	_, ps, _ = load(t, minimal+"\n[relay]\naddress = \"smtp.example.org:0\"\ntls = \"tls\"\n")
	wantError(t, ps, "relay.address", "from 1 to 65535")

	// Clear text to a remote relay is allowed, with a warning.
	_, ps, _ = load(t, minimal+"\n[relay]\naddress = \"smtp.example.org:25\"\n")
	if ps.HasErrors() {
		t.Errorf("tls none to a remote relay: %s", dump(ps))
	}
	wantWarning(t, ps, "relay.tls", "clear text")

	for _, tt := range []struct{ doc, key, text string }{
		{"username = \"relay@example.org\"\ntls = \"starttls\"\naddress = \"smtp.example.org:587\"\n", "relay.password_file", "must be too"},
		{"password_file = \"pw\"\ntls = \"starttls\"\naddress = \"smtp.example.org:587\"\n", "relay.username", "must be too"},
		{"username = \"relay@example.org\"\npassword_file = \"pw\"\n", "relay.tls", "password in clear text"},
		{"max_recipients = 0\n", "relay.max_recipients", "from 1 to 1000"},
		{"max_recipients = 1001\n", "relay.max_recipients", "from 1 to 1000"},
		{"connections = 65\n", "relay.connections", "from 1 to 64"},
		{"connect_timeout = \"0s\"\n", "relay.connect_timeout", "longer than 0"},
		{"command_timeout = \"0s\"\n", "relay.command_timeout", "longer than 0"},
	} {
		dir := t.TempDir()
		writeFile(t, dir, "dkim.pem", keyPEM(t, "rsa2048-pkcs1"), 0o600)
		writeFile(t, dir, "pw", []byte("secret\n"), 0o600)
		doc := minimal + "\n[relay]\n" + tt.doc
		_, ps := Parse([]byte(doc), filepath.Join(dir, "restrictedmail.toml"))
		wantError(t, ps, tt.key, tt.text)
	}
}

func TestPasswordFile(t *testing.T) {
	t.Parallel()
	relay := func(pwfile string) string {
		return minimal + "\n[relay]\naddress = \"smtp-relay.gmail.com:587\"\ntls = \"starttls\"\nusername = \"relay@example.org\"\npassword_file = \"" + pwfile + "\"\n"
	}
	parse := func(t *testing.T, pw []byte, mode uint32) (*Config, Problems) {
		dir := t.TempDir()
		writeFile(t, dir, "dkim.pem", keyPEM(t, "rsa2048-pkcs1"), 0o600)
		if pw != nil {
			writeFile(t, dir, "relay.password", pw, os.FileMode(mode))
		}
		return Parse([]byte(relay("relay.password")), filepath.Join(dir, "restrictedmail.toml"))
	}
	cfg, ps := parse(t, []byte("s3cret pass\r\n"), 0o600)
	if len(ps) > 0 || cfg == nil || cfg.Relay.Password != "s3cret pass" {
		t.Fatalf("good password file: %v\n%s", cfg, dump(ps))
	}
	if !filepath.IsAbs(cfg.Relay.PasswordFile) {
		t.Errorf("password_file not resolved: %q", cfg.Relay.PasswordFile)
	}
	_, ps = parse(t, nil, 0)
	wantError(t, ps, "relay.password_file", "cannot read")
	_, ps = parse(t, []byte(""), 0o600)
	wantError(t, ps, "relay.password_file", "is empty")
	_, ps = parse(t, []byte("\n"), 0o600)
	wantError(t, ps, "relay.password_file", "is empty")
	cfg, ps = parse(t, []byte("s3cret\n"), 0o644)
	if cfg == nil || ps.HasErrors() {
		t.Errorf("world-readable password file is an error: %s", dump(ps))
	}
	p := wantWarning(t, ps, "relay.password_file", "readable by every user")
	if p.Line == 0 {
		t.Error("warning without a line")
	}
	// Group-readable is fine.
	if _, ps = parse(t, []byte("s3cret\n"), 0o640); len(ps) > 0 {
		t.Errorf("mode 0640: %s", dump(ps))
	}
	// The problem text never shows the password.
	_, ps = parse(t, []byte("s3cret\n"), 0o644)
	if strings.Contains(dump(ps), "s3cret") {
		t.Error("a problem shows the password")
	}
}

func TestListValidation(t *testing.T) {
	t.Parallel()
	doc := minimal + `
[[lists]]
address = "BOARD@Example.org"
bounce_address = "b2@example.org"
recipients = ["x@example.org"]

[[lists]]
address = "nobounce@example.org"
recipients = ["x@example.org"]

[[lists]]
address = "loop@example.org"
bounce_address = "LOOP@example.org"
recipients = ["x@example.org"]

[[lists]]
address = "board+x@example.org"
bounce_address = "b3@example.org"
recipients = ["x@example.org"]

[[lists]]
address = "not an address"
bounce_address = "also not"
recipients = ["x@example.org", "bad@", "self@example.org"]
list_id = "no dots"

[[lists]]
address = "self@example.org"
name = "two\nlines"
bounce_address = "b4@example.org"
recipients = ["SELF@example.org"]
`
	_, ps, _ := load(t, doc)
	p := wantError(t, ps, "lists[1].address", "BOARD@example.org is configured twice")
	if p.Line != lineOf(t, doc, "BOARD@Example.org") {
		t.Errorf("duplicate list on line %d", p.Line)
	}
	p = wantError(t, ps, "lists[2].bounce_address", "missing")
	if p.Line != lineOf(t, doc, "nobounce@")-1 {
		t.Errorf("missing bounce_address on line %d, want the line of its [[lists]]", p.Line)
	}
	wantError(t, ps, "lists[3].bounce_address", "must differ from the list address")
	wantError(t, ps, "lists[4].address", `contains the recipient delimiter "+"`)
	wantError(t, ps, "lists[5].address", `"not an address"`)
	wantError(t, ps, "lists[5].bounce_address", `"also not"`)
	p = wantError(t, ps, "lists[5].recipients[1]", `"bad@"`)
	if p.Line != lineOf(t, doc, `"bad@"`) {
		t.Errorf("bad recipient on line %d", p.Line)
	}
	wantError(t, ps, "lists[5].list_id", "is not a List-Id")
	wantError(t, ps, "lists[6].name", "must be one line")
	wantError(t, ps, "lists[6].recipients[0]", "is the list itself")
	if n := errorCount(ps); n != 10 {
		t.Errorf("%d errors, want 10:\n%s", n, dump(ps))
	}
	// No lists at all: a warning.
	_, ps, _ = load(t, "[store]\npath = \"x.db\"\n")
	wantWarning(t, ps, "lists", "no [[lists]]")
}

func TestRecipientsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "dkim.pem", keyPEM(t, "rsa2048-pkcs1"), 0o600)
	writeFile(t, dir, "members.txt", []byte("# the board\n\n  carol@example.com  \nalice@example.net\n# alice again, spelled otherwise:\nALICE@Example.NET\n\tdave@bücher.example\n"), 0o644)
	writeFile(t, dir, "bad.txt", []byte("# comment\nerin@example.com\nnot an address\nfrank@example.com\n"), 0o644)
	path := filepath.Join(dir, "restrictedmail.toml")

	doc := strings.Replace(minimal, `recipients = ["alice@example.net"]`,
		`recipients = ["alice@example.net", "bob@example.com", "Bob@EXAMPLE.com"]`+"\nrecipients_file = \"members.txt\"", 1)
	cfg, ps := Parse([]byte(doc), path)
	if len(ps) > 0 {
		t.Fatalf("problems: %s", dump(ps))
	}
	got := cfg.Lists[0].Members
	want := "alice@example.net bob@example.com carol@example.com dave@xn--bcher-kva.example"
	if strings.Join(got, " ") != want {
		t.Errorf("Members = %v, want %s (deduplicated, in order, comments and blank lines skipped)", got, want)
	}
	if cfg.Lists[0].RecipientsFile != filepath.Join(dir, "members.txt") {
		t.Errorf("recipients_file not resolved: %q", cfg.Lists[0].RecipientsFile)
	}

	doc = strings.Replace(minimal, `recipients = ["alice@example.net"]`, `recipients_file = "bad.txt"`, 1)
	_, ps = Parse([]byte(doc), path)
	if errorCount(ps) != 1 {
		t.Fatalf("want one error: %s", dump(ps))
	}
	p := wantError(t, ps, "lists[0].recipients_file", "bad.txt line 3: \"not an address\"")
	if p.Line != lineOf(t, doc, "recipients_file") {
		t.Errorf("recipients_file problem on line %d", p.Line)
	}
	doc = strings.Replace(minimal, `recipients = ["alice@example.net"]`, `recipients_file = "missing.txt"`, 1)
	_, ps = Parse([]byte(doc), path)
	wantError(t, ps, "lists[0].recipients_file", "cannot read")
}

func TestIDN(t *testing.T) {
	t.Parallel()
	doc := `hostname = "mx.bücher.example"
[store]
path = "state.db"

[[dkim]]
domain = "bücher.example"
selector = "rm1"
private_key_file = "dkim.pem"

[[lists]]
address = "vorstand@bücher.example"
name = "Vorstand"
recipients = ["jürgen@bücher.example"]
bounce_address = "vorstand-bounces@BÜCHER.example"
`
	cfg := mustLoad(t, doc)
	l := cfg.Lists[0]
	if l.Addr.String() != "vorstand@xn--bcher-kva.example" || l.Bounce.Domain != "xn--bcher-kva.example" {
		t.Errorf("list %s, bounce %s: want the xn-- form", l.Addr, l.Bounce)
	}
	if cfg.DKIM[0].Domain != "xn--bcher-kva.example" || cfg.KeyFor("xn--bcher-kva.example") == nil {
		t.Errorf("DKIM domain %q", cfg.DKIM[0].Domain)
	}
	if cfg.List(address.MustParse("VORSTAND@bücher.example")) == nil {
		t.Error("the list is not found by its U-label spelling")
	}
	if l.ID() != "vorstand.xn--bcher-kva.example" {
		t.Errorf("List-Id %q", l.ID())
	}
	if len(l.Members) != 1 || !address.MustParse(l.Members[0]).HasUTF8() {
		t.Errorf("members %v", l.Members)
	}
}

func TestTokensSection(t *testing.T) {
	t.Parallel()
	doc := minimal + `
[tokens]
prefix = "RM TOKEN"
header = "X-Token:"
default_uses = -1
`
	_, ps, _ := load(t, doc)
	wantError(t, ps, "tokens.prefix", "printable ASCII without spaces")
	wantError(t, ps, "tokens.header", "is not a header field name")
	wantError(t, ps, "tokens.default_uses", "at least 1")
	_, ps, _ = load(t, minimal+"\n[tokens]\nprefix = \"\"\nheader = \"\"\n")
	wantError(t, ps, "tokens.prefix", "must not be empty")
	wantError(t, ps, "tokens.header", "is not a header field name")
	cfg := mustLoad(t, minimal+"\n[tokens]\nprefix = \"LEGOTOKEN\"\nheader = \"X-Posting-Token\"\n")
	if cfg.Tokens.Prefix != "LEGOTOKEN" || cfg.Tokens.Header != "X-Posting-Token" {
		t.Errorf("tokens %+v", cfg.Tokens)
	}
}

func TestGeneralValidation(t *testing.T) {
	t.Parallel()
	doc := `hostname = "bad host"
recipient_delimiter = "a"
[log]
level = "verbose"
format = "xml"
[store]
path = ""
[lmtp]
max_message_size = 0
max_recipients = -1
give_up_after = "0s"
` + strings.TrimPrefix(minimal, `hostname = "mx.example.org"`+"\n\n[store]\npath = \"state.db\"\n")
	_, ps, _ := load(t, doc)
	wantError(t, ps, "hostname", "is not a host name")
	wantError(t, ps, "recipient_delimiter", "punctuation")
	wantError(t, ps, "log.level", `"verbose" is not one of debug, info, warn, error`)
	wantError(t, ps, "log.format", `"xml" is not one of text, json`)
	wantError(t, ps, "store.path", "must name the database file")
	wantError(t, ps, "lmtp.max_message_size", "greater than 0")
	wantError(t, ps, "lmtp.max_recipients", "greater than 0")
	wantError(t, ps, "lmtp.give_up_after", "longer than 0")
	for _, d := range []string{"@", ".", "ü"} {
		_, ps, _ := load(t, `recipient_delimiter = "`+d+`"`+"\n"+minimal)
		wantError(t, ps, "recipient_delimiter", "punctuation")
	}
	cfg := mustLoad(t, `recipient_delimiter = "-+"`+"\n"+strings.Replace(minimal, "board-bounces", "boardbounces", 1))
	if cfg.RecipientDelimiter != "-+" {
		t.Errorf("delimiter %q", cfg.RecipientDelimiter)
	}
}
