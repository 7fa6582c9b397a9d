package manpage

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// ConfigKey is a key the configuration accepts, found from the toml tags
// of its struct.
type ConfigKey struct {
	Name    string        // "lmtp.listen", or "[[lists]] address" in an array of tables
	Restart bool          // tagged reload:"restart": a reload keeps the value in force
	Value   reflect.Value // its default; invalid in an array of tables
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// ConfigKeys walks the toml tags of the configuration struct that defaults
// points to (config.Default()) and returns every key, in declaration
// order. A struct field is a table, a slice of structs an array of tables;
// a type that unmarshals itself from text is a value.
func ConfigKeys(defaults any) []ConfigKey {
	v := reflect.ValueOf(defaults)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	return walk(v, "", false)
}

func walk(v reflect.Value, prefix string, inArray bool) []ConfigKey {
	var keys []ConfigKey
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		ft := f.Type
		switch {
		case isTable(ft):
			keys = append(keys, walk(fv, join(prefix, name), inArray)...)
		case ft.Kind() == reflect.Slice && isTable(ft.Elem()):
			keys = append(keys, walk(reflect.New(ft.Elem()).Elem(), "[["+join(prefix, name)+"]] ", true)...)
		default:
			k := ConfigKey{Name: join(prefix, name), Restart: strings.HasPrefix(f.Tag.Get("reload"), "restart")}
			if !inArray {
				k.Value = fv
			}
			keys = append(keys, k)
		}
	}
	return keys
}

func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textUnmarshaler)
}

func join(prefix, name string) string {
	if prefix == "" || strings.HasSuffix(prefix, " ") {
		return prefix + name
	}
	return prefix + "." + name
}

// literalDefault matches a default cell that is one code span, optionally
// followed by a remark in parentheses: "`\"5m\"`", "`\"\"` (off)".
var literalDefault = regexp.MustCompile("^`([^`]*)`\\s*(\\(.*\\))?$")

// Check compares the README's table with the keys the configuration
// accepts and returns one sentence per problem, each saying how to fix
// it: a key without a row, a row naming no key, a row without a meaning,
// and a literal default that is not the code's.
func Check(keys []ConfigKey, rows []Key) []string {
	var problems []string
	byName := map[string]ConfigKey{}
	for _, k := range keys {
		byName[k.Name] = k
	}
	documented := map[string]bool{}
	for _, r := range rows {
		if strings.TrimSpace(r.Meaning) == "" && !strings.Contains(r.Default, "as for") {
			problems = append(problems, fmt.Sprintf("README.md line %d: %s has no meaning: say what it does in the third cell", r.Line, strings.Join(r.Names, ", ")))
		}
		for _, n := range r.Names {
			k, ok := byName[n]
			if !ok {
				problems = append(problems, fmt.Sprintf("README.md line %d: the key table names %q, which the configuration does not accept: correct or remove the row", r.Line, n))
				continue
			}
			if documented[n] {
				problems = append(problems, fmt.Sprintf("README.md line %d: %q has a second row", r.Line, n))
			}
			documented[n] = true
			if err := checkDefault(k, r.Default, byName); err != nil {
				problems = append(problems, fmt.Sprintf("README.md line %d: %s: %v", r.Line, n, err))
			}
		}
	}
	for _, k := range keys {
		if !documented[k.Name] {
			problems = append(problems, fmt.Sprintf("configuration key %q is not documented: add a row \"| `%s` | default | meaning |\" to the key table of README.md's \"Configuration reference\" (the man page restrictedmail.toml(5) is made from it)", k.Name, k.Name))
		}
	}
	return problems
}

// checkDefault compares a literal default cell with the key's default
// value. Cells in words ("the host name", "`spool` beside the store"), or
// naming another key ("`hostname`"), are not checked.
func checkDefault(k ConfigKey, cell string, keys map[string]ConfigKey) error {
	m := literalDefault.FindStringSubmatch(strings.TrimSpace(cell))
	if m == nil || !k.Value.IsValid() {
		return nil
	}
	lit := m[1]
	if _, isKey := keys[lit]; isKey {
		return nil
	}
	// Decode the literal as TOML into a value of the key's type, so that
	// "5m" and 5*time.Minute, or "0660" and 0o660, compare equal.
	holder := reflect.New(reflect.StructOf([]reflect.StructField{{
		Name: "V", Type: k.Value.Type(), Tag: `toml:"v"`,
	}}))
	_, err := toml.Decode("v = "+lit, holder.Interface())
	got := holder.Elem().Field(0)
	if err != nil {
		// Unquoted in the table (`inet:127.0.0.1:8025`): a plain string.
		if k.Value.Kind() != reflect.String {
			return fmt.Errorf("the default cell %s is not a TOML value of the key's type (%v)", cell, err)
		}
		got = reflect.ValueOf(lit).Convert(k.Value.Type())
	}
	if !equal(got, k.Value) {
		return fmt.Errorf("the table says the default is %s, the code's (config.Default) is %s: correct the table or the code", cell, show(k.Value))
	}
	return nil
}

func equal(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && b.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true // nil and empty
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func show(v reflect.Value) string {
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return fmt.Sprintf("%q", s.String())
	}
	if v.Kind() == reflect.String {
		return fmt.Sprintf("%q", v.String())
	}
	return fmt.Sprintf("%v", v.Interface())
}

// section returns the table a key belongs to: "" for top-level keys,
// "log", "[[lists]]".
func section(name string) string {
	if rest, ok := strings.CutPrefix(name, "[["); ok {
		arr, _, _ := strings.Cut(rest, "]]")
		return "[[" + arr + "]]"
	}
	if i := strings.LastIndex(name, "."); i >= 0 {
		return "[" + name[:i] + "]"
	}
	return ""
}

// Undocumented lists the names of flags with no usage text.
func Undocumented(cmds []Command) []string {
	var out []string
	for _, c := range cmds {
		for _, f := range c.Flags {
			if strings.TrimSpace(f.Usage) == "" {
				out = append(out, fmt.Sprintf("restrictedmail %s --%s has no usage text: give it one where the flag is defined (fs.String(name, default, usage)); the man page and --help show it", c.Name, f.Name))
			}
		}
	}
	return slices.Clip(out)
}
