package manpage

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestEscape(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`--config`:          `\-\-config`,
		`a\b`:               `a\eb`,
		`say "hi" it's`:     `say \(dqhi\(dq it\(aqs`,
		"em — dash ≥ 2":     `em \[u2014] dash \[u2265] 2`,
		"ctl\x01\x7f":       "ctl",
		"emoji \U0001F600.": `emoji \[u1F600].`,
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := line(".TH not a request"); got != `\&.TH not a request` {
		t.Errorf("a leading dot is not guarded: %q", got)
	}
	if got := line("'quote"); got != `\&'quote` {
		t.Errorf("a leading apostrophe is not guarded: %q", got)
	}
}

func TestInline(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"`log.level` is *one* of **these**": `\fBlog.level\fR is \fIone\fR of \fBthese\fR`,
		"see [`etc/x.toml`](etc/x.toml)":    `see \fBetc/x.toml\fR`,
		"a `--flag` here":                   `a \fB\-\-flag\fR here`,
		"unclosed `code":                    "unclosed `code",
		"2 * 3 * 4":                         "2 * 3 * 4",
	} {
		if got := inline(in); got != want {
			t.Errorf("inline(%q) = %q, want %q", in, got, want)
		}
	}
}

const readme = "# x\n\n## Configuration reference\n\nOne TOML file. See [`etc/x.toml`](etc/x.toml).\n\n" +
	"| key | default | meaning |\n|---|---|---|\n" +
	"| `name` | the host name | what it is called |\n" +
	"| `sec.wait`, `sec.other` | `\"5m\"` | how long; `a \\| b` or `c | d` |\n" +
	"| `sec.mode` | `\"0660\"` (octal) | permissions |\n" +
	"| `sec.addr` | `inet:127.0.0.1:25` | where |\n" +
	"| `[[items]] id` | — (required) | the id |\n" +
	"\nAfter the table.\n\n## Next\n\n| key | default | meaning |\n"

type mode uint32

func (m *mode) UnmarshalText(b []byte) error {
	var v uint32
	for _, c := range strings.Trim(string(b), `"`) {
		v = v*8 + uint32(c-'0')
	}
	*m = mode(v)
	return nil
}

type dur time.Duration

func (d *dur) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = dur(v)
	return err
}

type sample struct {
	Name string `toml:"name"`
	Sec  struct {
		Wait  dur    `toml:"wait" reload:"restart"`
		Other dur    `toml:"other"`
		Mode  mode   `toml:"mode" reload:"restart"`
		Addr  string `toml:"addr"`
		Addrs []int  `toml:"-"`
	} `toml:"sec"`
	Items []struct {
		ID string `toml:"id"`
	} `toml:"items"`
	File string `toml:"-"`
}

func sampleDefaults() *sample {
	s := &sample{Name: "host"}
	s.Sec.Wait, s.Sec.Other, s.Sec.Mode, s.Sec.Addr = dur(5*time.Minute), dur(5*time.Minute), 0o660, "inet:127.0.0.1:25"
	return s
}

func TestParseReference(t *testing.T) {
	t.Parallel()
	ref, err := ParseReference(readme, "## Configuration reference")
	if err != nil {
		t.Fatal(err)
	}
	if len(ref.Keys) != 5 {
		t.Fatalf("%d rows, want 5: %+v", len(ref.Keys), ref.Keys)
	}
	if got := ref.Keys[1]; strings.Join(got.Names, ",") != "sec.wait,sec.other" || got.Meaning != "how long; `a | b` or `c | d`" || got.Line != 10 {
		t.Errorf("row 2: %+v", got)
	}
	if !strings.Contains(ref.Intro, "One TOML file") || !strings.Contains(ref.Outro, "After the table.") || strings.Contains(ref.Outro, "Next") {
		t.Errorf("prose: intro %q outro %q", ref.Intro, ref.Outro)
	}
	if _, err := ParseReference("## Configuration reference\n\nno table\n", "## Configuration reference"); err == nil {
		t.Error("a section without the table is accepted")
	}
	if _, err := ParseReference(readme, "## Missing"); err == nil {
		t.Error("a missing section is accepted")
	}
	bad := strings.Replace(readme, "| `sec.addr` | `inet:127.0.0.1:25` | where |", "| `sec.addr` | where |", 1)
	if _, err := ParseReference(bad, "## Configuration reference"); err == nil || !strings.Contains(err.Error(), "line 12") {
		t.Errorf("a row with 2 cells: %v", err)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	keys := ConfigKeys(sampleDefaults())
	var names []string
	for _, k := range keys {
		names = append(names, k.Name)
	}
	if got := strings.Join(names, " "); got != "name sec.wait sec.other sec.mode sec.addr [[items]] id" {
		t.Fatalf("keys: %s", got)
	}
	if !keys[1].Restart || keys[2].Restart || !keys[3].Restart {
		t.Errorf("restart tags: %+v", keys[1:4])
	}
	ref, err := ParseReference(readme, "## Configuration reference")
	if err != nil {
		t.Fatal(err)
	}
	if p := Check(keys, ref.Keys); len(p) > 0 {
		t.Fatalf("a matching table has problems:\n%s", strings.Join(p, "\n"))
	}

	// Drift: a key without a row, a row without a key, a wrong default,
	// a row without a meaning.
	d := sampleDefaults()
	d.Sec.Mode = 0o600
	drifted := strings.NewReplacer(
		"| `name` | the host name | what it is called |\n", "",
		"| `sec.addr` | `inet:127.0.0.1:25` | where |", "| `sec.addr`, `sec.gone` | `inet:127.0.0.1:25` | |",
	).Replace(readme)
	ref, err = ParseReference(drifted, "## Configuration reference")
	if err != nil {
		t.Fatal(err)
	}
	problems := strings.Join(Check(ConfigKeys(d), ref.Keys), "\n")
	for _, want := range []string{
		"configuration key \"name\" is not documented: add a row \"| `name` | default | meaning |\"",
		`names "sec.gone", which the configuration does not accept`,
		`sec.mode: the table says the default is ` + "`\"0660\"`" + ` (octal), the code's (config.Default) is 384`,
		"sec.addr, sec.gone has no meaning",
	} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems lack %q:\n%s", want, problems)
		}
	}
}

func TestUndocumented(t *testing.T) {
	t.Parallel()
	got := Undocumented([]Command{{Name: "serve", Flags: []Flag{{Name: "config", Usage: "file"}, {Name: "quiet"}}}})
	if len(got) != 1 || !strings.Contains(got[0], "restrictedmail serve --quiet has no usage text") {
		t.Errorf("Undocumented: %q", got)
	}
}

// Groff renders the pages without a warning (lintian runs the same check).
func TestPagesRenderWithoutWarnings(t *testing.T) {
	t.Parallel()
	ref, err := ParseReference(readme, "## Configuration reference")
	if err != nil {
		t.Fatal(err)
	}
	h := Header{Title: "restrictedmail", Section: "8", Date: "2025-01-31", Source: "restrictedmail 1.0", Manual: "System Administration"}
	var cmds, conf bytes.Buffer
	err = WriteCommands(&cmds, &CommandsPage{
		Header: h, Name: "a test — with “quotes”",
		Description: "A *paragraph*.\n\n- an item\n- another\n\n```\n.not a request\n  indented\n```\n\n### Sub heading\n\n'quoted' start",
		Commands: []Command{
			{Name: "token", Summary: "tokens", Description: "Group prose."},
			{Name: "token issue", Synopsis: "token issue --config FILE [--ttl 72h]", Description: ".leading dot\n\nsecond paragraph", Flags: []Flag{
				{Name: "config", Arg: "file", Usage: "configuration file", Default: "/etc/x.toml"},
				{Name: "v", Usage: "verbose"},
			}},
		},
		After: []Section{{Title: "See also", Markdown: "restrictedmail.toml(5)"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Title, h.Section = "restrictedmail.toml", "5"
	err = WriteConfig(&conf, &ConfigPage{Header: h, Name: "configuration", Synopsis: "`/etc/x.toml`", Reference: ref, Keys: ConfigKeys(sampleDefaults())})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`\fB\-\-config\fR \fIfile\fR`, `(default: \fB/etc/x.toml\fR)`, `\fB\-v\fR`, `\&.leading dot`} {
		if !strings.Contains(cmds.String(), want) {
			t.Errorf("restrictedmail.8 lacks %q:\n%s", want, cmds.String())
		}
	}
	for _, want := range []string{`.SS "[sec]"`, `\fBsec.wait\fR, \fBsec.other\fR`, "(octal). A reload keeps the value in force; a restart applies it.", `.SS "[[items]]"`, "Default: none (required)."} {
		if !strings.Contains(conf.String(), want) {
			t.Errorf("restrictedmail.toml.5 lacks %q:\n%s", want, conf.String())
		}
	}
	groffCheck(t, cmds.Bytes())
	groffCheck(t, conf.Bytes())
}

// groffCheck fails t when groff -ww reports anything about page: the check
// lintian makes, and what `man --warnings` shows.
func groffCheck(t *testing.T, page []byte) {
	t.Helper()
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Fatalf("groff is needed to check the man pages: apt-get install -y groff-base (%v)", err)
	}
	cmd := exec.Command(groff, "-ww", "-man", "-Tutf8", "-z")
	cmd.Stdin = bytes.NewReader(page)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff -ww -man: %v\n%s\n--- page:\n%s", err, out, page)
	}
}
