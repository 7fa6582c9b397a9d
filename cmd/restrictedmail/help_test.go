package main

import (
	"strings"
	"testing"
)

// TestHelpNamesEveryFlag: every command and subcommand answers --help (and
// -h) with exit 0 and a usage that names each of its flags.
func TestHelpNamesEveryFlag(t *testing.T) {
	t.Parallel()
	commands := map[string][]string{
		"serve":               {"config"},
		"check-config":        {"config"},
		"check-postfix":       {"config", "postfix-config"},
		"token issue":         {"config", "list", "sender", "ttl", "uses", "recipient", "hide-sender", "out", "report"},
		"delivery list":       {"config", "list", "since", "limit"},
		"delivery show":       {"config"},
		"recipients bouncing": {"config", "list", "min", "last"},
		"token list":          {"config"},
		"token revoke":        {"config"},
		"token import":        {"config", "format", "list", "ttl"},
		"apikey create":       {"config", "name", "list", "scope", "expires"},
		"apikey list":         {"config"},
		"apikey revoke":       {"config"},
		"test":                {"config", "from", "to"},
		"store copy":          {"config", "to", "password-file"},
		"dkim keygen":         {"domain", "selector", "out", "type", "bits", "force"},
		"dkim check":          {"config", "timeout"},
		"demo":                {"keep", "v"},
		"completion":          {},
	}
	for cmd, flags := range commands {
		for _, h := range []string{"--help", "-h"} {
			code, out, errOut := cli(append(strings.Fields(cmd), h)...)
			text := out + errOut
			if code != exitOK {
				t.Errorf("%s %s: exit %d, want 0\n%s", cmd, h, code, text)
			}
			if !strings.Contains(text, "Usage: restrictedmail "+cmd) {
				t.Errorf("%s %s: no usage line:\n%s", cmd, h, text)
			}
			for _, f := range flags {
				if !strings.Contains(text, "\n  -"+f+" ") && !strings.Contains(text, "\n  -"+f+"\n") && !strings.Contains(text, "\n  -"+f+"\t") {
					t.Errorf("%s %s does not describe -%s:\n%s", cmd, h, f, text)
				}
			}
		}
	}
	// The command groups and the top level list what they hold.
	groups := map[string][]string{
		"":           {"serve", "check-config", "token", "test", "dkim", "demo", "version", "help", "apikey"},
		"token":      {"token issue", "token list", "token revoke", "token import"},
		"apikey":     {"apikey create", "apikey list", "apikey revoke"},
		"dkim":       {"dkim keygen", "dkim check"},
		"delivery":   {"delivery list", "delivery show"},
		"recipients": {"recipients bouncing"},
		"store":      {"store copy"},
	}
	for group, subs := range groups {
		code, out, _ := cli(append(strings.Fields(group), "--help")...)
		if code != exitOK {
			t.Errorf("%q --help: exit %d", group, code)
		}
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Errorf("%q --help does not name %q:\n%s", group, s, out)
			}
		}
	}
	// Every command in the top-level list has a help entry above.
	for _, c := range commands0() {
		if _, ok := commands[c]; !ok && groups[c] == nil && c != "version" && c != "help" {
			t.Errorf("command %q is not covered by this test", c)
		}
	}
	if code, out, _ := cli("version", "--help"); code != exitOK || !strings.HasPrefix(out, "restrictedmail ") {
		t.Errorf("version --help: exit %d %q", code, out)
	}
}

// commands0 names the top-level commands.
func commands0() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}
