package manpage

import (
	"bufio"
	"fmt"
	"strings"
)

// Key is one row of the README's table of configuration keys. A row may
// name several keys that share a default and a meaning
// ("`lmtp.read_timeout`, `lmtp.write_timeout`"); keys of an array of
// tables are written "[[lists]] address". Default and Meaning are Markdown.
type Key struct {
	Names   []string
	Default string
	Meaning string
	Line    int // in the README, for messages
}

// KeyTableHeader is the header row that marks the table of keys.
const KeyTableHeader = "| key | default | meaning |"

// Reference is a README section that holds the table of keys: the prose
// before and after it (Markdown) and its rows.
type Reference struct {
	Intro, Outro string
	Keys         []Key
}

// ParseReference reads the section of the README under heading (e.g.
// "## Configuration reference") up to the next heading of the same level,
// and the table of keys in it.
func ParseReference(readme, heading string) (*Reference, error) {
	level := strings.IndexFunc(heading, func(r rune) bool { return r != '#' })
	var (
		ref     Reference
		in      bool
		table   int // 0 before the table, 1 in it, 2 after
		intro   strings.Builder
		outro   strings.Builder
		lineNum int
	)
	sc := bufio.NewScanner(strings.NewReader(readme))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		lineNum++
		l := sc.Text()
		if !in {
			in = strings.TrimSpace(l) == heading
			continue
		}
		if h := strings.IndexFunc(l, func(r rune) bool { return r != '#' }); h > 0 && h <= level && strings.HasPrefix(l[h:], " ") {
			break // the next section
		}
		switch {
		case table == 0 && normalizeRow(l) == KeyTableHeader:
			table = 1
		case table == 1 && strings.HasPrefix(strings.TrimSpace(l), "|"):
			cells := splitRow(l)
			if isSeparator(cells) {
				continue
			}
			if len(cells) != 3 {
				return nil, fmt.Errorf("README line %d: a row of the key table needs 3 cells (key, default, meaning), has %d", lineNum, len(cells))
			}
			names := codeSpans(cells[0])
			if len(names) == 0 {
				return nil, fmt.Errorf("README line %d: the key cell %q names no `key`", lineNum, cells[0])
			}
			ref.Keys = append(ref.Keys, Key{Names: names, Default: cells[1], Meaning: cells[2], Line: lineNum})
		case table == 1:
			table = 2
			outro.WriteString(l + "\n")
		case table == 0:
			intro.WriteString(l + "\n")
		default:
			outro.WriteString(l + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !in {
		return nil, fmt.Errorf("README has no section %q", heading)
	}
	if table == 0 {
		return nil, fmt.Errorf("README section %q has no table with the header %q", heading, KeyTableHeader)
	}
	ref.Intro, ref.Outro = intro.String(), outro.String()
	return &ref, nil
}

func normalizeRow(l string) string {
	cells := splitRow(l)
	if len(cells) == 0 {
		return ""
	}
	return "| " + strings.Join(cells, " | ") + " |"
}

// splitRow splits a Markdown table row into trimmed cells; a | inside a
// code span or escaped as \| belongs to its cell.
func splitRow(l string) []string {
	l = strings.TrimSpace(l)
	if !strings.HasPrefix(l, "|") {
		return nil
	}
	var (
		cells []string
		cur   strings.Builder
		code  bool
	)
	for i := 1; i < len(l); i++ {
		c := l[i]
		switch {
		case c == '`':
			code = !code
			cur.WriteByte(c)
		case c == '\\' && i+1 < len(l) && l[i+1] == '|':
			cur.WriteByte('|')
			i++
		case c == '|' && !code:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if rest := strings.TrimSpace(cur.String()); rest != "" {
		cells = append(cells, rest)
	}
	return cells
}

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, "-: ") != "" {
			return false
		}
	}
	return len(cells) > 0
}

// codeSpans returns the contents of the `code spans` of s.
func codeSpans(s string) []string {
	var out []string
	for {
		_, after, ok := strings.Cut(s, "`")
		if !ok {
			return out
		}
		code, rest, ok := strings.Cut(after, "`")
		if !ok {
			return out
		}
		out = append(out, code)
		s = rest
	}
}
