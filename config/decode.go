package config

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Problem is one thing wrong (or, with Warning, worth a look) in a
// configuration.
type Problem struct {
	Key     string // "lmtp.listen", "lists[1].address"; "" for the whole file
	Line    int    // 1-based; 0 when unknown or for defaults
	Message string
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is the outcome of loading a file.
type Problems []Problem

// HasErrors reports whether any problem is not a warning.
func (ps Problems) HasErrors() bool {
	for _, p := range ps {
		if !p.Warning {
			return true
		}
	}
	return false
}

// Error joins the errors (not the warnings), one a line.
func (ps Problems) Error() string {
	var lines []string
	for _, p := range ps {
		if !p.Warning {
			lines = append(lines, p.String())
		}
	}
	return strings.Join(lines, "\n")
}

// decoder turns the generic tree that toml parsed into the typed Config,
// collecting every unknown key and wrong type instead of stopping at the
// first (BurntSushi/toml's struct decoding stops at the first type error).
type decoder struct {
	lines    map[string]int
	problems Problems
}

func (d *decoder) addf(key string, format string, args ...any) {
	d.problems = append(d.problems, Problem{Key: key, Line: d.line(key), Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnf(key string, format string, args ...any) {
	d.problems = append(d.problems, Problem{Key: key, Line: d.line(key), Message: fmt.Sprintf(format, args...), Warning: true})
}

// line returns the line of key, or of its nearest parent that has one.
func (d *decoder) line(key string) int {
	for k := key; k != ""; {
		if l, ok := d.lines[k]; ok {
			return l
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// table decodes a TOML table into the struct v.
func (d *decoder) table(path string, m map[string]any, v reflect.Value) {
	fields := map[string]reflect.Value{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = v.Field(i)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key := join(path, k)
		f, ok := fields[k]
		if !ok {
			d.addf(key, "unknown key%s", suggest(k, fields))
			continue
		}
		d.value(key, m[k], f)
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// value decodes one TOML value into f.
func (d *decoder) value(key string, raw any, f reflect.Value) {
	if f.CanAddr() && f.Addr().Type().Implements(textUnmarshaler) {
		s, ok := raw.(string)
		if !ok {
			d.addf(key, "must be a string%s, not %s", textHint(f), tomlType(raw))
			return
		}
		if err := f.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.addf(key, "%v", err)
		}
		return
	}
	switch f.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.addf(key, "must be a string, not %s", tomlType(raw))
			return
		}
		f.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.addf(key, "must be true or false, not %s", tomlType(raw))
			return
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, ok := raw.(int64)
		if !ok {
			d.addf(key, "must be an integer, not %s", tomlType(raw))
			return
		}
		f.SetInt(n)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			d.addf(key, "must be a table ([%s]), not %s", key, tomlType(raw))
			return
		}
		d.table(key, m, f)
	case reflect.Slice:
		d.slice(key, raw, f)
	default:
		d.addf(key, "cannot be decoded (internal: %s)", f.Kind())
	}
}

func (d *decoder) slice(key string, raw any, f reflect.Value) {
	elem := f.Type().Elem()
	if elem.Kind() == reflect.Struct {
		tables, ok := raw.([]map[string]any)
		if !ok {
			d.addf(key, "must be an array of tables ([[%s]]), not %s", key, tomlType(raw))
			return
		}
		out := reflect.MakeSlice(f.Type(), len(tables), len(tables))
		for i, m := range tables {
			d.table(fmt.Sprintf("%s[%d]", key, i), m, out.Index(i))
		}
		f.Set(out)
		return
	}
	items, ok := raw.([]any)
	if !ok {
		d.addf(key, "must be an array, not %s", tomlType(raw))
		return
	}
	out := reflect.MakeSlice(f.Type(), len(items), len(items))
	for i, it := range items {
		d.value(fmt.Sprintf("%s[%d]", key, i), it, out.Index(i))
	}
	f.Set(out)
}

func textHint(f reflect.Value) string {
	switch f.Interface().(type) {
	case Duration:
		return ` such as "30s", "72h" or "4d"`
	case FileMode:
		return ` such as "0660"`
	}
	return ""
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	}
	return fmt.Sprintf("a %T", v)
}

// suggest names the known key closest to k, for typos.
func suggest(k string, fields map[string]reflect.Value) string {
	best, bestDist := "", 3
	for name := range fields {
		if strings.EqualFold(name, k) {
			return fmt.Sprintf(" (did you mean %q? keys are case-sensitive)", name)
		}
		if dist := editDistance(k, name); dist < bestDist || dist == bestDist && name < best {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
