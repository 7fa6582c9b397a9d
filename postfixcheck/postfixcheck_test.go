package postfixcheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

// rules are board@ and events@, routed to lmtp:[127.0.0.1]:8024, with
// bestyret@ declared as an alias of board@.
func rules() *policy.Rules {
	board := &policy.List{Addr: address.MustParse("board@example.org"), Bounce: address.MustParse("board-bounces@example.org"), Aliases: []address.Address{address.MustParse("bestyret@example.org")}}
	events := &policy.List{Addr: address.MustParse("events@example.org")}
	r := policy.NewRules("+", token.Finder{}, []*policy.List{board, events})
	r.Transport = "lmtp:[127.0.0.1]:8024"
	return r
}

// postfixDir writes a Postfix configuration directory: main.cf with the
// clean settings overridden by set, and hashed maps made with postmap.
func postfixDir(t *testing.T, set map[string]string, maps map[string]string) string {
	t.Helper()
	postfixtest.Require(t)
	dir := t.TempDir()
	main := map[string]string{
		"compatibility_level":   "3.6",
		"smtpd_milters":         "inet:127.0.0.1:11332, { inet:localhost:8025, default_action = accept }",
		"transport_maps":        "hash:" + filepath.Join(dir, "transport"),
		"recipient_delimiter":   "+",
		"allow_percent_hack":    "no",
		"swap_bangpath":         "no",
		"milter_default_action": "accept",
		"virtual_alias_maps":    "hash:" + filepath.Join(dir, "virtual"),
		"alias_maps":            "hash:" + filepath.Join(dir, "aliases"),
	}
	for k, v := range set {
		main[k] = v
	}
	var b strings.Builder
	for k, v := range main {
		if v != "-" {
			b.WriteString(k + " = " + v + "\n")
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, content := range maps {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		prog := "postmap"
		if name == "aliases" {
			prog = "postalias"
		}
		if out, err := exec.Command(tool(t, prog), "-c", dir, "hash:"+file).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", prog, err, out)
		}
	}
	return dir
}

func tool(t *testing.T, name string) string {
	for _, p := range []string{name, "/usr/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("%s not found; install with: apt-get install -y postfix", name)
	return ""
}

var cleanMaps = map[string]string{
	"transport": "board@example.org lmtp:[127.0.0.1]:8024\nevents@example.org restrictedmail:inet:127.0.0.1:8024\nboard-bounces@example.org lmtp:[127.0.0.1]:8024\n",
	"virtual":   "bestyret@example.org board@example.org\nsales@example.org alice@example.net, bob@example.net\n",
	"aliases":   "postmaster: root\nroot: admin@example.net\n",
}

func check(t *testing.T, dir string) Report {
	t.Helper()
	r, err := Check(context.Background(), Options{ConfigDir: dir, Milter: "inet:127.0.0.1:8025", Rules: rules()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCleanConfiguration(t *testing.T) {
	t.Parallel()
	r := check(t, postfixDir(t, nil, cleanMaps))
	if len(r.Problems) != 0 || len(r.Unchecked) != 0 {
		t.Fatalf("a clean configuration: %+v", r)
	}
}

// TestEveryProblemIsFound plants one problem of each kind at a time and
// expects exactly that one reported, with a fix.
func TestEveryProblemIsFound(t *testing.T) {
	t.Parallel()
	withMaps := func(name, content string) map[string]string {
		m := map[string]string{}
		for k, v := range cleanMaps {
			m[k] = v
		}
		m[name] = content
		return m
	}
	for _, tt := range []struct {
		name string
		set  map[string]string
		maps map[string]string
		want string
	}{
		{"milter missing", map[string]string{"smtpd_milters": "inet:127.0.0.1:11332"}, cleanMaps, "does not name restrictedmail's milter"},
		{"list not routed", nil, withMaps("transport", "board@example.org lmtp:[127.0.0.1]:8024\nboard-bounces@example.org lmtp:[127.0.0.1]:8024\n"), "events@example.org is in no transport_maps"},
		{"list routed elsewhere", nil, withMaps("transport", "board@example.org lmtp:[127.0.0.1]:9999\nevents@example.org lmtp:[127.0.0.1]:8024\nboard-bounces@example.org lmtp:[127.0.0.1]:8024\n"), "routes board@example.org to lmtp:[127.0.0.1]:9999"},
		{"bounce address not routed", nil, withMaps("transport", "board@example.org lmtp:[127.0.0.1]:8024\nevents@example.org lmtp:[127.0.0.1]:8024\n"), "the bounce address board-bounces@example.org is in no transport_maps"},
		{"bounce address routed elsewhere", nil, withMaps("transport", "board@example.org lmtp:[127.0.0.1]:8024\nevents@example.org lmtp:[127.0.0.1]:8024\nboard-bounces@example.org local:\n"), "routes the bounce address board-bounces@example.org to local:"},
		{"delimiter", map[string]string{"recipient_delimiter": "+-"}, cleanMaps, `recipient_delimiter is "+-"`},
		{"percent hack", map[string]string{"allow_percent_hack": "yes"}, cleanMaps, "allow_percent_hack = yes"},
		{"bang path", map[string]string{"swap_bangpath": "yes"}, cleanMaps, "swap_bangpath = yes"},
		{"no milter_default_action", map[string]string{"milter_default_action": "-"}, cleanMaps, "milter_default_action is not set"},
		{"rcpt macros", map[string]string{"milter_rcpt_macros": "i"}, cleanMaps, "lacks {rcpt_addr}"},
		{"virtual alias", nil, withMaps("virtual", "bestyret@example.org board@example.org\nboard-alias@example.org Board@example.org\n"), "board-alias@example.org → board@example.org"},
		{"local alias", nil, withMaps("aliases", "root: admin@example.net\nstyret: board+x@example.org\n"), "styret → board@example.org"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := check(t, postfixDir(t, tt.set, tt.maps))
			if len(r.Problems) != 1 || !strings.Contains(r.Problems[0].What, tt.want) || r.Problems[0].Fix == "" {
				t.Fatalf("problems %+v, want one with %q", r.Problems, tt.want)
			}
		})
	}
}

// TestUnlistableMapsAreNamed: a regexp or pcre alias map cannot be listed;
// the report says it was not checked.
func TestUnlistableMapsAreNamed(t *testing.T) {
	t.Parallel()
	dir := postfixDir(t, nil, cleanMaps)
	re := filepath.Join(dir, "virtual.re")
	if err := os.WriteFile(re, []byte("/^b.ard@/ board@example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	main, _ := os.ReadFile(filepath.Join(dir, "main.cf"))
	main = append(main, []byte("virtual_alias_maps = hash:"+filepath.Join(dir, "virtual")+", regexp:"+re+"\n")...)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), main, 0o644); err != nil {
		t.Fatal(err)
	}
	r := check(t, dir)
	if len(r.Problems) != 0 || len(r.Unchecked) != 1 || !strings.Contains(r.Unchecked[0], "regexp:") {
		t.Fatalf("%+v", r)
	}
}

func TestMapList(t *testing.T) {
	t.Parallel()
	got := mapList("inline:{ a=b, { c = d } }, hash:/x regexp:/y,\n\tpcre:/z")
	want := []string{"inline:{ a=b, { c = d } }", "hash:/x", "regexp:/y", "pcre:/z"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("%q", got)
	}
}
