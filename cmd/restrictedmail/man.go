package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/manpage"
)

// runMan is the hidden `man` command that `make man` and the Debian
// package build run: it writes restrictedmail.8 from the commands' flag
// sets and restrictedmail.toml.5 from the README's key table, after
// checking that table against the keys the configuration accepts.
func runMan(ctx context.Context, args []string, _, errOut io.Writer) int {
	fs := newFlags("man", `man [--dir DIR] [--readme README.md]

Writes the manual pages restrictedmail.8 and restrictedmail.toml.5 into DIR
(build time: make man, make deb). Refuses when a configuration key is
missing from the README's key table or a flag has no usage text.`, errOut)
	dir := fs.String("dir", ".", "write the pages into `directory`")
	readme := fs.String("readme", "README.md", "the README `file` whose \"Configuration reference\" table documents the keys")
	ver := fs.String("version", versionString(), "the `version` the pages name")
	date := fs.String("date", "", "the pages' `date` (YYYY-MM-DD; default: SOURCE_DATE_EPOCH, else today)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *date == "" {
		*date = manDate()
	}
	md, err := os.ReadFile(*readme)
	if err == nil {
		err = writeManPages(ctx, *dir, md, *ver, *date)
	}
	if err != nil {
		fmt.Fprintf(errOut, "restrictedmail man: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// manDate follows SOURCE_DATE_EPOCH, so that a rebuild is identical.
func manDate() string {
	t := time.Now()
	if s, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		t = time.Unix(s, 0)
	}
	return t.UTC().Format("2006-01-02")
}

// Where the Debian package puts things; the pages name them.
const (
	manExamples = "/usr/share/doc/restrictedmail/examples"
	manState    = "/var/lib/restrictedmail"
)

// renderManPages renders both pages.
func renderManPages(ctx context.Context, readme []byte, ver, date string) (cmd8, conf5 []byte, err error) {
	docs, err := commandDocs(ctx)
	if err != nil {
		return nil, nil, err
	}
	if p := manpage.Undocumented(docs); len(p) > 0 {
		return nil, nil, errors.New(strings.Join(p, "\n"))
	}
	ref, err := manpage.ParseReference(string(readme), "## Configuration reference")
	if err != nil {
		return nil, nil, err
	}
	keys := manpage.ConfigKeys(config.Default())
	if p := manpage.Check(keys, ref.Keys); len(p) > 0 {
		return nil, nil, errors.New(strings.Join(p, "\n"))
	}
	source := "restrictedmail " + ver
	var a, b bytes.Buffer
	err = manpage.WriteCommands(&a, &manpage.CommandsPage{
		Header:      manpage.Header{Title: "restrictedmail", Section: "8", Date: date, Source: source, Manual: "System Administration"},
		Name:        "posting tokens for restricted mail addresses: a Postfix milter and LMTP endpoint",
		Description: manDescription,
		Commands:    docs,
		After:       manAfter8,
	})
	if err == nil {
		err = manpage.WriteConfig(&b, &manpage.ConfigPage{
			Header:    manpage.Header{Title: "restrictedmail.toml", Section: "5", Date: date, Source: source, Manual: "File Formats"},
			Name:      "configuration of restrictedmail(8)",
			Synopsis:  "`" + config.DefaultPath + "`",
			Reference: ref,
			Keys:      keys,
			After:     manAfter5,
		})
	}
	return a.Bytes(), b.Bytes(), err
}

func writeManPages(ctx context.Context, dir string, readme []byte, ver, date string) error {
	cmd8, conf5, err := renderManPages(ctx, readme, ver, date)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "restrictedmail.8"), cmd8, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "restrictedmail.toml.5"), conf5, 0o644)
}

const manDescription = `**restrictedmail** guards *restricted addresses* — a board, "all participants
of event X" — for Postfix with *posting tokens*: only mail that carries a valid
token reaches the address.

A **milter** in Postfix's ` + "`smtpd_milters`" + ` rejects mail for a restricted address
without a valid token at SMTP time (` + "`550 5.7.1`" + ` with a sentence that says why), so
nothing is queued and no backscatter is sent. Accepted mail is handed by
Postfix's ` + "`transport_maps`" + ` to an **LMTP endpoint** in the same process, which checks
the token again, spends it, removes every trace of it, rewrites the message
so that the copies pass SPF, DKIM and DMARC, signs it with DKIM and sends one
copy to every recipient of the list through a relay — exactly once, even when
Postfix hands the message over again.

The administrator issues tokens with ` + "`restrictedmail token issue`" + ` and gives them to
the senders, who attach the token file, add a header, or write to
` + "`address+TOKEN@domain`" + `.

Every command that reads the configuration takes ` + "`--config FILE`" + ` (default
` + "`" + config.DefaultPath + "`" + `), described in restrictedmail.toml(5). Flags take one or two
dashes and may follow the arguments.`

var manAfter8 = []manpage.Section{
	{Title: "Exit status", Markdown: "0 on success, 1 on failure (a configuration with errors, a refused message in `test`, a DKIM record that does not match in `dkim check`), 2 for bad usage."},
	{Title: "Signals", Markdown: "`serve` re-reads the configuration and the recipients files on SIGHUP (`systemctl reload restrictedmail`); a file with errors is refused and the configuration in force is kept. SIGTERM and SIGINT stop accepting and give deliveries in flight `lmtp.shutdown_timeout` to finish."},
	{Title: "Files", Markdown: "- `" + config.DefaultPath + "`: the configuration, restrictedmail.toml(5).\n" +
		"- `" + manState + "/state.db`: the store (token hashes, the delivery journal); back it up with `sqlite3 state.db \".backup copy.db\"`.\n" +
		"- `" + manExamples + "/`: the example configuration and the Postfix snippets for `main.cf` and `master.cf`.\n" +
		"- `/usr/share/doc/restrictedmail/README.md.gz`: the whole guide: installing, Postfix, operating, reliability."},
	{Title: "See also", Markdown: "restrictedmail.toml(5), postconf(5), master(5), systemctl(1)"},
}

var manAfter5 = []manpage.Section{
	{Title: "Files", Markdown: "- `" + config.DefaultPath + "`: read by every command; the Debian package installs the example as a conffile, mode 0640, group restrictedmail.\n" +
		"- `" + manExamples + "/restrictedmail.toml`: the example, every key with its default and a comment."},
	{Title: "See also", Markdown: "restrictedmail(8), postconf(5)"},
}
