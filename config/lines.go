package config

import (
	"fmt"
	"strings"
)

// keyLines maps each key of a TOML document to the line it is defined on,
// in the same notation the decoder uses ("lmtp.listen", "lists[1].name",
// "lists[0].recipients[2]"). BurntSushi/toml keeps key positions private,
// so this small scanner follows tables, arrays of tables, dotted keys and
// values that span lines (arrays, multi-line strings). It runs only on
// files toml has already parsed, so it need not diagnose syntax.
func keyLines(doc string) map[string]int {
	lines := map[string]int{}
	counts := map[string]int{}
	prefix := ""
	sc := valueScanner{}
	for i, raw := range strings.Split(doc, "\n") {
		n := i + 1
		if sc.open() {
			sc.scan(raw, n, lines)
			continue
		}
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "[["):
			name := normalizeKey(strings.TrimSuffix(cutComment(line[2:]), "]]"))
			prefix = fmt.Sprintf("%s[%d]", name, counts[name])
			counts[name]++
			lines[prefix] = n
			if _, ok := lines[name]; !ok {
				lines[name] = n
			}
		case strings.HasPrefix(line, "["):
			prefix = normalizeKey(strings.TrimSuffix(cutComment(line[1:]), "]"))
			lines[prefix] = n
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			key := join(prefix, normalizeKey(k))
			lines[key] = n
			sc = valueScanner{key: key}
			sc.scan(v, n, lines)
		}
	}
	return lines
}

// normalizeKey removes spaces and quotes around the parts of a dotted key.
func normalizeKey(k string) string {
	parts := strings.Split(strings.TrimSpace(k), ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

func cutComment(s string) string {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// valueScanner tracks whether a value continues on the next line (an
// unclosed array or inline table, or an open multi-line string) and records
// the line on which each element of an array value starts.
type valueScanner struct {
	key      string
	depth    int
	multi    string // the closing quotes while inside a multi-line string
	elem     int    // index of the current array element
	recorded bool   // whether the current element's line is recorded
}

func (s *valueScanner) open() bool { return s.depth > 0 || s.multi != "" }

func (s *valueScanner) scan(v string, line int, lines map[string]int) {
	for i := 0; i < len(v); i++ {
		if s.multi != "" {
			if strings.HasPrefix(v[i:], s.multi) {
				i += 2
				s.multi = ""
			}
			continue
		}
		c := v[i]
		if s.depth == 1 && !s.recorded && !strings.ContainsRune(" \t\r],#", rune(c)) {
			lines[fmt.Sprintf("%s[%d]", s.key, s.elem)] = line
			s.recorded = true
		}
		switch c {
		case '#':
			return
		case ',':
			if s.depth == 1 {
				s.elem++
				s.recorded = false
			}
		case '[', '{':
			s.depth++
		case ']', '}':
			s.depth--
		case '"', '\'':
			q := strings.Repeat(string(c), 3)
			if strings.HasPrefix(v[i:], q) {
				s.multi = q
				i += 2
				continue
			}
			// A single-line string: skip to its closing quote.
			for i++; i < len(v) && v[i] != c; i++ {
				if c == '"' && v[i] == '\\' {
					i++
				}
			}
		}
	}
}
