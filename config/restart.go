package config

import (
	"fmt"
	"reflect"
	"strings"
)

// A reload (SIGHUP) swaps in a new Config for the next message, but some
// settings are used once, when the daemon starts: the listeners' sockets,
// their limits and timeouts (the servers are built with them), the store
// and its spool, the logger. Such a field carries the struct tag
//
//	reload:"restart"
//
// and KeepRestartOnly keeps its value in force, reporting the change, so
// that the configuration in force always says what is really in use. A
// field without the tag applies at the next message (allowed_networks,
// give_up_after, the relay, the lists...). lmtp.shutdown_timeout is not
// tagged: the daemon reads it from the configuration in force when it
// shuts down, so a reload does apply it.
//
// A field derived while loading (toml:"-") from a restart-only key goes
// with that key:
//
//	Addr Listen `toml:"-" reload:"restart,with=listen"`
//
// is kept whenever the key "listen" of the same table is kept; it is never
// reported by itself (the key is).
//
// The tags are only looked for in nested tables ([store], [lmtp]...):
// the arrays of tables ([[lists]], [[dkim]]) hold none, and the tests see
// that they never do.
const reloadTag = "reload"

// Change is a restart-only setting that a reload found changed and did not
// apply.
type Change struct {
	Key     string // dotted TOML key: "lmtp.socket_mode"
	InForce string // the value kept, printed: "0660"
	Ignored string // the new file's value, not applied: "0600"
}

// String says what changed and that a restart applies it.
func (c Change) String() string {
	return fmt.Sprintf("%s changed from %s to %s; restart to apply it (keeping %s)", c.Key, c.InForce, c.Ignored, c.InForce)
}

// inUse gives, for a restart-only key whose default depends on another
// key, the value in use; changes to such a key are judged by it.
// lmtp.spool_dir defaults to "spool" beside store.path: writing the default
// out changes nothing, and when only store.path changes the spool follows
// the store that is kept, so lmtp.spool_dir is not reported.
var inUse = map[string]func(*Config) any{
	"lmtp.spool_dir": func(c *Config) any { return c.SpoolDir() },
}

// KeepRestartOnly copies into next, a configuration about to be swapped in,
// the value in force of every restart-only setting (reload:"restart") that
// differs, and returns those changes in the order of the file's sections.
// inForce is not modified. The spool directory in use (Config.SpoolDir) is
// kept along with store.path and lmtp.spool_dir.
func KeepRestartOnly(next, inForce *Config) (kept []Change) {
	ignored := make(map[string]any, len(inUse))
	for key, f := range inUse {
		ignored[key] = f(next)
	}
	keepTable(reflect.ValueOf(next).Elem(), reflect.ValueOf(inForce).Elem(), "", func(key string, n, o reflect.Value) {
		c := Change{Key: key, InForce: printable(o.Interface()), Ignored: printable(n.Interface())}
		if key == "store.url" { // logged: never with its password
			c.InForce, c.Ignored = redactURL(c.InForce), redactURL(c.Ignored)
		}
		if f := inUse[key]; f != nil {
			now, was := ignored[key], f(inForce)
			if reflect.DeepEqual(now, was) {
				return
			}
			c.InForce, c.Ignored = printable(was), printable(now)
		}
		kept = append(kept, c)
	})
	return kept
}

// keepTable does KeepRestartOnly for the table next/inForce at prefix,
// calling report for each restart-only key it keeps.
func keepTable(next, inForce reflect.Value, prefix string, report func(key string, next, inForce reflect.Value)) {
	t := next.Type()
	keptHere := map[string]bool{} // TOML names of this table's kept keys
	var derived []int
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		restart, with := reloadOf(f)
		switch {
		case !restart:
			if name != "" && name != "-" && f.Type.Kind() == reflect.Struct {
				keepTable(next.Field(i), inForce.Field(i), join(prefix, name), report)
			}
		case with != "":
			derived = append(derived, i)
		default:
			n, o := next.Field(i), inForce.Field(i)
			if reflect.DeepEqual(n.Interface(), o.Interface()) {
				continue
			}
			key := join(prefix, name)
			report(key, n, o) // before n is overwritten
			n.Set(o)
			keptHere[name] = true
		}
	}
	for _, i := range derived {
		if _, with := reloadOf(t.Field(i)); keptHere[with] {
			next.Field(i).Set(inForce.Field(i))
		}
	}
}

// reloadOf reads a field's reload tag. A malformed tag is a programming
// error that the package's tests catch; it panics.
func reloadOf(f reflect.StructField) (restart bool, with string) {
	tag, ok := f.Tag.Lookup(reloadTag)
	if !ok {
		return false, ""
	}
	opts := strings.Split(tag, ",")
	bad := opts[0] != "restart" || len(opts) > 2 || !f.IsExported()
	toml := f.Tag.Get("toml")
	if len(opts) == 2 {
		with, ok = strings.CutPrefix(opts[1], "with=")
		bad = bad || !ok || with == "" || toml != "-"
	} else {
		bad = bad || toml == "" || toml == "-"
	}
	if bad {
		panic(fmt.Sprintf("config: field %s: malformed tag reload:%q (want \"restart\" on a TOML key, or \"restart,with=key\" on a toml:\"-\" field derived from key)", f.Name, tag))
	}
	return true, with
}

// printable prints a setting's value for the log; the empty string shows
// as "".
func printable(v any) string {
	s := fmt.Sprint(v)
	if s == "" {
		return `""`
	}
	return s
}
