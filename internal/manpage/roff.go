// Package manpage writes restrictedmail's manual pages, restrictedmail(8)
// and restrictedmail.toml(5), from what the code and the README already
// say: the commands' flag sets (collected by cmd/restrictedmail) and the
// README's table of configuration keys, checked against the keys the
// configuration accepts. Nothing is written twice, so a new flag or key
// cannot be missing from the pages: it is either documented where it is
// defined or the drift tests fail.
//
// The output is plain man(7) roff that `groff -ww -man` and lintian read
// without a warning: every character outside ASCII is a groff escape, and
// every hyphen is \- so that options copied from the page work.
package manpage

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// escape makes plain text safe inside a roff text line or a quoted macro
// argument.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-':
			b.WriteString(`\-`)
		case r == '"':
			b.WriteString(`\(dq`)
		case r == '\'':
			b.WriteString(`\(aq`)
		case r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f:
			// Control characters have no business in a page.
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, `\[u%04X]`, r)
		}
	}
	return b.String()
}

// line guards a text line: roff takes a leading dot or apostrophe for a
// request and a leading space for a break.
func line(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		return `\&` + s
	}
	return s
}

var (
	mdLink     = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	mdEmphasis = regexp.MustCompile(`\*\*([^*]+)\*\*|(^|[\s(])\*([^*\s][^*]*)\*`)
)

// inline turns one paragraph of Markdown inline text (code spans, links,
// **strong**, *emphasis*) into roff.
func inline(md string) string {
	var b strings.Builder
	md = mdLink.ReplaceAllString(md, "$1") // links may hold code spans
	for {
		// Split on backticks: text, then a code span.
		before, after, found := strings.Cut(md, "`")
		b.WriteString(prose(before))
		if !found {
			break
		}
		code, rest, closed := strings.Cut(after, "`")
		if !closed {
			b.WriteString(prose("`" + after))
			break
		}
		b.WriteString(`\fB` + escape(code) + `\fR`)
		md = rest
	}
	return b.String()
}

// prose renders Markdown text without code spans.
func prose(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range mdEmphasis.FindAllStringSubmatchIndex(s, -1) {
		b.WriteString(escape(s[last:m[0]]))
		if m[2] >= 0 { // **strong**
			b.WriteString(`\fB` + escape(s[m[2]:m[3]]) + `\fR`)
		} else { // *emphasis*, after its leading space or parenthesis
			b.WriteString(escape(s[m[4]:m[5]]) + `\fI` + escape(s[m[6]:m[7]]) + `\fR`)
		}
		last = m[1]
	}
	b.WriteString(escape(s[last:]))
	return b.String()
}

// text renders plain text (a flag's usage, a command's description).
func text(s string) string { return escape(s) }

// paragraphs splits text on blank lines and joins each paragraph's lines.
func paragraphs(s string) []string {
	var out []string
	for _, p := range regexp.MustCompile(`\n[ \t]*\n`).Split(strings.TrimSpace(s), -1) {
		if p = strings.Join(strings.Fields(p), " "); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var upperWord = regexp.MustCompile(`\b[A-Z][A-Z0-9_]+\b`)

// synopsis renders a usage line: the command words bold, the placeholders
// (FILE, ADDRESS) italic, the rest as written.
func synopsis(cmd, rest string) string {
	r := escape(rest)
	r = upperWord.ReplaceAllString(r, `\fI$0\fR`)
	return `\fB` + escape(cmd) + `\fR ` + r
}
