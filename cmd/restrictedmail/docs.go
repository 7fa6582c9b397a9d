package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/restrictedmail/restrictedmail/internal/manpage"
)

// flagSink stands in for errOut when a command runs with --help to be
// documented: newFlags hands it every FlagSet it builds, so the man page
// and the completion script are made from the flags the commands really
// define. It also keeps what the command printed.
type flagSink struct {
	bytes.Buffer
	sets []sinkSet
}

type sinkSet struct {
	fs       *flag.FlagSet
	synopsis string
}

func (s *flagSink) add(fs *flag.FlagSet, synopsis string) {
	s.sets = append(s.sets, sinkSet{fs, synopsis})
}

// commandDocs runs every command, and every subcommand of a command group,
// with --help and describes what it found. A command is either a leaf that
// builds its flags with newFlags, or a group whose usage names its
// subcommands as "restrictedmail GROUP SUB"; anything else is an error,
// because its flags could not be documented.
func commandDocs(ctx context.Context) ([]manpage.Command, error) {
	var (
		docs []manpage.Command
		errs []string
	)
	for _, c := range commands() {
		if c.run == nil {
			continue // help: the top-level usage
		}
		leaf, out, ok := helpOf(ctx, c.run, nil)
		if ok {
			leaf.Name, leaf.Summary = c.name, summaryOf(c)
			docs = append(docs, leaf)
			continue
		}
		subs := subcommands(c.name, out)
		sum := summaryOf(c)
		group := manpage.Command{Name: c.name, Summary: sum,
			Description: strings.ToUpper(sum[:1]) + sum[1:] + ".\n\n" + groupProse(out)}
		var found []manpage.Command
		for _, sub := range subs {
			d, _, ok := helpOf(ctx, c.run, []string{sub})
			if !ok {
				continue // a word after the group's name that is no subcommand
			}
			d.Name = c.name + " " + sub
			found = append(found, d)
		}
		if len(found) == 0 {
			errs = append(errs, fmt.Sprintf("command %q neither builds its flags with newFlags nor names subcommands that do in its --help (\"restrictedmail %s SUB\"): the man page and the completion cannot describe it", c.name, c.name))
			continue
		}
		docs = append(docs, group)
		docs = append(docs, found...)
	}
	if len(errs) > 0 {
		return docs, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return docs, nil
}

// helpOf runs run(prefix... --help) and returns the command it describes,
// or ok false when it built no FlagSet (a group, or no such subcommand).
func helpOf(ctx context.Context, run func(context.Context, []string, io.Writer, io.Writer) int, prefix []string) (doc manpage.Command, printed string, ok bool) {
	var out bytes.Buffer
	sink := &flagSink{}
	code := run(ctx, append(slices.Clone(prefix), "--help"), &out, sink)
	printed = out.String() + sink.String()
	if code != exitOK || len(sink.sets) != 1 {
		return doc, printed, false
	}
	s := sink.sets[0]
	syn, desc, _ := strings.Cut(s.synopsis, "\n")
	doc = manpage.Command{Synopsis: strings.TrimSpace(syn), Description: desc}
	s.fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		doc.Flags = append(doc.Flags, manpage.Flag{Name: f.Name, Arg: arg, Usage: usage, Default: nonZero(f)})
	})
	return doc, printed, true
}

// nonZero returns the flag's default unless it is its type's zero value,
// which --help does not show either.
func nonZero(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false", "0s", "[]":
		return ""
	}
	return f.DefValue
}

// summaryOf is the command list's line without its hint at the command
// line ("issue, list and revoke posting tokens (token help)").
func summaryOf(c command) string {
	s := strings.TrimSpace(c.summary)
	if i := strings.LastIndex(s, " ("+c.name+" "); i > 0 && strings.HasSuffix(s, ")") {
		s = s[:i]
	}
	if s == "" {
		s = c.name
	}
	return s
}

// subcommands finds "restrictedmail GROUP SUB" in a group's usage.
func subcommands(group, usage string) []string {
	re := regexp.MustCompile(`restrictedmail ` + regexp.QuoteMeta(group) + ` ([a-z][a-z0-9-]*)`)
	var subs []string
	for _, m := range re.FindAllStringSubmatch(usage, -1) {
		if !slices.Contains(subs, m[1]) && m[1] != "help" {
			subs = append(subs, m[1])
		}
	}
	return subs
}

// groupProse is a group's usage without its "Usage:" block and its
// pointer to --help: the paragraphs that explain the group.
func groupProse(usage string) string {
	var keep []string
	for _, p := range strings.Split(usage, "\n\n") {
		t := strings.TrimSpace(p)
		if t == "" || strings.HasPrefix(t, "Usage:") {
			continue
		}
		var lines []string
		for _, l := range strings.Split(t, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), `Run "restrictedmail`) {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			keep = append(keep, strings.Join(lines, "\n"))
		}
	}
	return strings.Join(keep, "\n\n")
}
