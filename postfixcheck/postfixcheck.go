// Package postfixcheck reads Postfix's configuration (postconf) and maps
// (postmap, postalias) and reports what would let mail for a restricted
// address past restrictedmail, or make Postfix and restrictedmail see
// different recipients: the milter missing from smtpd_milters, a list (or
// its bounce address) not routed to the LMTP endpoint, another recipient_delimiter, the percent hack
// and bang paths, no explicit milter_default_action, milter_rcpt_macros
// without the resolved recipient, and every alias whose target is a
// restricted address (Postfix expands aliases after the milter has judged
// the recipients: no milter can refuse them at SMTP time). It is
// `restrictedmail check-postfix`, and `serve` logs the same at start.
package postfixcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
)

// Options say which Postfix and which restrictedmail to compare.
type Options struct {
	// ConfigDir is Postfix's configuration directory (postconf -c); ""
	// is Postfix's own default.
	ConfigDir string
	// Postconf, Postmap and Postalias are the programs; "" finds them on
	// PATH and in /usr/sbin.
	Postconf, Postmap, Postalias string
	// Milter is milter.listen ("inet:127.0.0.1:8025", "unix:/path"); ""
	// when the milter is off.
	Milter string
	// Rules are the lists, their aliases, the delimiter and the transport
	// (lmtp.transport) of the configuration.
	Rules *policy.Rules
}

// Problem is one thing to fix.
type Problem struct {
	What string // what is wrong
	Fix  string // what to do
}

func (p Problem) String() string { return p.What + "; fix: " + p.Fix }

// Report is the outcome of a check.
type Report struct {
	Problems []Problem
	// Unchecked names the maps whose entries cannot be listed (regexp,
	// pcre, SQL, LDAP, proxy, …): aliases in them were not checked.
	Unchecked []string
}

// ErrNoPostfix says that postconf could not be run.
var ErrNoPostfix = errors.New("postconf not found: run the check on the Postfix host, or install postfix")

// Check reads Postfix's configuration and compares it with o.
func Check(ctx context.Context, o Options) (Report, error) {
	pf, err := newPostfix(o)
	if err != nil {
		return Report{}, err
	}
	c := &checker{o: o, pf: pf}
	params, err := pf.params(ctx, "smtpd_milters", "transport_maps", "recipient_delimiter", "allow_percent_hack",
		"swap_bangpath", "milter_rcpt_macros", "milter_protocol", "virtual_alias_maps", "alias_maps")
	if err != nil {
		return Report{}, err
	}
	explicit, err := pf.explicit(ctx, "milter_default_action")
	if err != nil {
		return Report{}, err
	}
	c.milters(params["smtpd_milters"])
	c.settings(params, explicit)
	if err := c.transports(ctx, params["transport_maps"]); err != nil {
		return Report{}, err
	}
	if err := c.aliases(ctx, "virtual_alias_maps", params["virtual_alias_maps"], false); err != nil {
		return Report{}, err
	}
	if err := c.aliases(ctx, "alias_maps", params["alias_maps"], true); err != nil {
		return Report{}, err
	}
	return c.r, nil
}

type checker struct {
	o  Options
	pf *postfix
	r  Report
}

func (c *checker) add(fix, format string, args ...any) {
	c.r.Problems = append(c.r.Problems, Problem{What: fmt.Sprintf(format, args...), Fix: fix})
}

// milters checks that smtpd_milters names milter.listen.
func (c *checker) milters(value string) {
	if c.o.Milter == "" {
		return
	}
	for _, m := range mapList(value) {
		if sameMilter(m, c.o.Milter) {
			return
		}
	}
	c.add(fmt.Sprintf("add %s to smtpd_milters (next to any other milter), then postfix reload", c.o.Milter),
		"smtpd_milters (%q) does not name restrictedmail's milter at %s: mail without a token is not refused at SMTP time", value, c.o.Milter)
}

// sameMilter compares a Postfix milter entry ("inet:127.0.0.1:8025", "{
// inet:host:port, default_action=accept }", "unix:/path", a bare path)
// with milter.listen.
func sameMilter(entry, listen string) bool {
	entry = strings.TrimSpace(strings.Trim(strings.TrimSpace(entry), "{}"))
	if i := strings.IndexByte(entry, ','); i >= 0 {
		entry = entry[:i]
	}
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		s = strings.Replace(s, "localhost", "127.0.0.1", 1)
		switch {
		case strings.HasPrefix(s, "inet:"), strings.HasPrefix(s, "unix:"):
		case strings.HasPrefix(s, "/"):
			s = "unix:" + s
		default:
			s = "inet:" + s
		}
		return s
	}
	return norm(entry) == norm(listen)
}

// settings checks the parameters that change which recipient Postfix
// delivers to.
func (c *checker) settings(p map[string]string, explicit map[string]string) {
	if got, want := p["recipient_delimiter"], c.o.Rules.Delimiter; got != want {
		c.add(fmt.Sprintf("set recipient_delimiter = %s in main.cf, or recipient_delimiter = %q in restrictedmail's configuration", want, got),
			"Postfix's recipient_delimiter is %q, restrictedmail's %q: they split subaddresses (board+TOKEN@) differently", got, want)
	}
	if strings.EqualFold(p["allow_percent_hack"], "yes") {
		c.add("set allow_percent_hack = no in main.cf",
			"allow_percent_hack = yes: Postfix rewrites user%%domain@ one of its own domains to user@domain, a spelling of a restricted address the milter sees only through {rcpt_addr}")
	}
	if strings.EqualFold(p["swap_bangpath"], "yes") {
		c.add("set swap_bangpath = no in main.cf",
			"swap_bangpath = yes: Postfix rewrites domain!user to user@domain, a spelling of a restricted address the milter sees only through {rcpt_addr}")
	}
	if explicit["milter_default_action"] == "" {
		c.add("set milter_default_action = accept (the LMTP endpoint still checks every token after the queue) or tempfail (mail waits while restrictedmail is down) in main.cf",
			"milter_default_action is not set: decide what Postfix does while the milter is down")
	}
	macros := p["milter_rcpt_macros"]
	for _, m := range []string{"{rcpt_addr}", "{rcpt_mailer}", "{rcpt_host}"} {
		if !slices.Contains(strings.Fields(strings.ReplaceAll(macros, ",", " ")), m) {
			c.add("add {rcpt_addr} {rcpt_host} {rcpt_mailer} to milter_rcpt_macros (Postfix's default has them)",
				"milter_rcpt_macros (%q) lacks %s: the milter then judges the recipient as typed, not as Postfix resolved it", macros, m)
			break
		}
	}
}

// transports checks that every list is routed to the LMTP endpoint.
func (c *checker) transports(ctx context.Context, value string) error {
	maps := mapList(value)
	want := c.o.Rules.Transport
	for _, l := range c.o.Rules.Lists {
		addr := l.Addr.String()
		got, err := c.pf.lookup(ctx, maps, strings.ToLower(addr), l.Addr.Domain, "*")
		if err != nil {
			c.add("make every map of transport_maps readable (postmap it), then postfix reload", "transport_maps cannot be read: %v", err)
			return nil
		}
		line := fmt.Sprintf("add \"%s %s\" to transport_maps", addr, want)
		switch {
		case got == "":
			c.add(line, "%s is in no transport_maps: Postfix will not hand its mail to restrictedmail", addr)
		case !sameTransport(got, want):
			c.add(line+" (or set lmtp.transport to what it is)", "transport_maps routes %s to %s, not to restrictedmail's %s", addr, got, want)
		}
		if err := c.bounceRoute(ctx, maps, l, want); err != nil {
			return err
		}
	}
	return nil
}

// bounceRoute checks that the list's bounce address reaches the endpoint
// too: the delivery reports (bounces) of the copies come back to it, with
// the delivery's tag as a subaddress that Postfix strips for the lookup.
func (c *checker) bounceRoute(ctx context.Context, maps []string, l *policy.List, want string) error {
	if l.Bounce.IsZero() {
		return nil
	}
	addr := l.Bounce.String()
	got, err := c.pf.lookup(ctx, maps, strings.ToLower(addr), l.Bounce.Domain, "*")
	if err != nil {
		return nil // reported for the list address already
	}
	line := fmt.Sprintf("add \"%s %s\" to transport_maps", addr, want)
	switch {
	case got == "":
		c.add(line, "the bounce address %s is in no transport_maps: the copies' bounces will not reach restrictedmail, and no delivery records them", addr)
	case !sameTransport(got, want):
		c.add(line, "transport_maps routes the bounce address %s to %s, not to restrictedmail's %s: the copies' bounces will not be recorded", addr, got, want)
	}
	return nil
}

// sameTransport compares next hops only: a named lmtp service of
// master.cf ("restrictedmail:inet:127.0.0.1:8024") reaches the endpoint as
// well as the generic "lmtp:[127.0.0.1]:8024".
func sameTransport(a, b string) bool {
	_, ah, _ := strings.Cut(strings.TrimSpace(a), ":")
	_, bh, _ := strings.Cut(strings.TrimSpace(b), ":")
	return policy.SameNexthop(ah, bh)
}

// listable are the map types whose entries postmap -s (postalias -s) can
// list.
var listable = []string{"hash", "btree", "lmdb", "cdb", "dbm", "sdbm", "texthash", "inline"}

// aliases lists the alias maps' entries and reports every alias whose
// target is a restricted address and that no list declares. local: the
// keys are local names (alias_maps), listed with postalias.
func (c *checker) aliases(ctx context.Context, param, value string, local bool) error {
	for _, m := range mapList(value) {
		typ, _, _ := strings.Cut(m, ":")
		if !slices.Contains(listable, strings.ToLower(typ)) {
			c.r.Unchecked = append(c.r.Unchecked, param+" "+m)
			continue
		}
		entries, err := c.pf.list(ctx, m, local)
		if err != nil {
			c.r.Unchecked = append(c.r.Unchecked, fmt.Sprintf("%s %s (%v)", param, m, err))
			continue
		}
		for _, e := range entries {
			for _, target := range splitTargets(e.value) {
				rc, err := c.o.Rules.Resolve(target)
				if err != nil || rc.List == nil || c.declared(e.key, rc.List) {
					continue
				}
				c.add(fmt.Sprintf("add %q to aliases of the list %s in restrictedmail's configuration if it is meant, or remove it", e.key, rc.List.Addr),
					"%s %s: %s → %s is expanded after the milter judged the recipients: mail to it without a token is queued and bounced", param, m, e.key, rc.List.Addr)
			}
		}
	}
	return nil
}

// declared reports whether key (an alias address or local name) is the
// list itself or one of its declared aliases.
func (c *checker) declared(key string, l *policy.List) bool {
	a, err := address.ParseEnvelope(key)
	if err != nil {
		// A local name: declared when an alias has it as local part.
		for _, al := range append([]address.Address{l.Addr}, l.Aliases...) {
			if address.FoldLocal(al.Local) == address.FoldLocal(key) {
				return true
			}
		}
		return false
	}
	if rc, err := c.o.Rules.Resolve(a.String()); err == nil && rc.List == l {
		return true
	}
	return false
}

// splitTargets splits an alias value into its targets.
func splitTargets(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// mapList splits a Postfix list parameter (commas or white space) keeping
// braces together: "inline:{ a=b, c=d }, hash:/x" is two maps.
func mapList(v string) []string {
	var out []string
	depth, start := 0, -1
	for i := 0; i <= len(v); i++ {
		var ch byte = ','
		if i < len(v) {
			ch = v[i]
		}
		switch {
		case ch == '{':
			depth++
		case ch == '}':
			depth--
		case depth == 0 && (ch == ',' || ch == ' ' || ch == '\t' || ch == '\n'):
			if start >= 0 {
				out = append(out, strings.TrimSpace(v[start:i]))
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	return out
}

type entry struct{ key, value string }

// postfix runs Postfix's configuration programs.
type postfix struct {
	dir                          string
	postconf, postmap, postalias string
}

func newPostfix(o Options) (*postfix, error) {
	p := &postfix{dir: o.ConfigDir}
	find := func(given, name string) (string, error) {
		if given != "" {
			return given, nil
		}
		if path, err := exec.LookPath(name); err == nil {
			return path, nil
		}
		path := "/usr/sbin/" + name
		if _, err := exec.LookPath(path); err == nil {
			return path, nil
		}
		return "", ErrNoPostfix
	}
	var err error
	if p.postconf, err = find(o.Postconf, "postconf"); err != nil {
		return nil, err
	}
	if p.postmap, err = find(o.Postmap, "postmap"); err != nil {
		return nil, err
	}
	if p.postalias, err = find(o.Postalias, "postalias"); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *postfix) run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	if p.dir != "" {
		args = append([]string{"-c", p.dir}, args...)
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// params reads parameters with postconf -h, one value a line.
func (p *postfix) params(ctx context.Context, names ...string) (map[string]string, error) {
	out, err := p.run(ctx, p.postconf, append([]string{"-h"}, names...)...)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(names) {
		return nil, fmt.Errorf("postconf -h printed %d lines for %d parameters", len(lines), len(names))
	}
	m := make(map[string]string, len(names))
	for i, n := range names {
		m[n] = strings.TrimSpace(lines[i])
	}
	return m, nil
}

// explicit reads parameters set in main.cf (postconf -n).
func (p *postfix) explicit(ctx context.Context, names ...string) (map[string]string, error) {
	out, err := p.run(ctx, p.postconf, append([]string{"-n"}, names...)...)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// lookup queries maps in order for each key in turn and returns the first
// value found, or "".
func (p *postfix) lookup(ctx context.Context, maps []string, keys ...string) (string, error) {
	for _, k := range keys {
		for _, m := range maps {
			out, err := p.run(ctx, p.postmap, "-q", k, m)
			var ee *exec.ExitError
			switch {
			case err == nil:
				return strings.TrimSpace(string(out)), nil
			case errors.As(err, &ee) && ee.ExitCode() == 1 && len(bytes.TrimSpace(out)) == 0 && !strings.Contains(err.Error(), "fatal"):
				continue // not found
			default:
				return "", err
			}
		}
	}
	return "", nil
}

// list lists a map's entries (postmap -s, postalias -s for alias maps).
func (p *postfix) list(ctx context.Context, m string, local bool) ([]entry, error) {
	prog := p.postmap
	if local {
		prog = p.postalias
	}
	out, err := p.run(ctx, prog, "-s", m)
	if err != nil {
		return nil, err
	}
	var es []entry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			k, v, ok = strings.Cut(sc.Text(), " ")
		}
		if ok {
			es = append(es, entry{strings.TrimSuffix(strings.TrimSpace(k), ":"), strings.TrimSpace(v)})
		}
	}
	return es, sc.Err()
}
