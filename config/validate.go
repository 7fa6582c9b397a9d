package config

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
)

// validator checks a decoded Config and derives its parsed fields.
type validator struct {
	*decoder
	cfg *Config
	dir string // base for relative paths
}

func (v *validator) validate() {
	c := v.cfg
	if _, err := address.Domain(c.Hostname); err != nil {
		v.addf("hostname", "%q is not a host name", c.Hostname)
	}
	for _, r := range c.RecipientDelimiter {
		if r > 127 || r == '@' || r == '.' || isAlnum(byte(r)) {
			v.addf("recipient_delimiter", "%q: use the punctuation characters of Postfix's recipient_delimiter, such as \"+\"", c.RecipientDelimiter)
			break
		}
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")
	v.store() // store.go
	if c.LMTP.SpoolDir != "" {
		c.LMTP.SpoolDir = v.path(c.LMTP.SpoolDir)
	}
	c.Milter.Addr, c.Milter.Networks = v.listener("milter", c.Milter.Listen, c.Milter.AllowedNetworks)
	c.LMTP.Addr, c.LMTP.Networks = v.listener("lmtp", c.LMTP.Listen, c.LMTP.AllowedNetworks)
	v.transport()
	v.http()
	v.api() // api.go
	v.webhooks()
	if c.Milter.Listen == "" && c.LMTP.Listen == "" {
		v.addf("lmtp.listen", "the milter and the LMTP endpoint are both disabled; `serve` would do nothing")
	}
	v.positive("lmtp.max_message_size", c.LMTP.MaxMessageSize)
	v.positive("lmtp.max_recipients", int64(c.LMTP.MaxRecipients))
	if c.LMTP.GiveUpAfter.D() <= 0 {
		v.addf("lmtp.give_up_after", "must be longer than 0")
	}
	if c.LMTP.Lease.D() < minLease {
		v.addf("lmtp.lease", "must be at least %s (the store counts in whole seconds and renews every third of it), not %s", minLease, c.LMTP.Lease.D())
	}
	if c.Reports.Window.D() < 0 {
		v.addf("reports.window", "must not be negative")
	}
	if c.Reports.PollInterval.D() <= 0 {
		v.addf("reports.poll_interval", "must be longer than 0")
	}
	v.relay()
	v.tokens()
	v.dkim()
	v.lists()
	v.web() // web.go: after the lists, whose owners and bounce addresses it reads
}

// minLease keeps a lease's renewals (every third) a second apart or more.
const minLease = 3 * time.Second

func (v *validator) oneOf(key, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.addf(key, "%q is not one of %s", val, strings.Join(allowed, ", "))
}

func (v *validator) positive(key string, n int64) {
	if n <= 0 {
		v.addf(key, "must be greater than 0, not %d", n)
	}
}

// path resolves a relative path against the configuration's directory.
func (v *validator) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.dir, p)
}

func (v *validator) listener(section, listen string, nets []string) (Listen, []NetworkSpec) {
	if listen == "" {
		return Listen{}, nil
	}
	l, err := ParseListen(listen)
	if err != nil {
		v.addf(section+".listen", "%v", err)
		return Listen{}, nil
	}
	var out []NetworkSpec
	for i, n := range nets {
		p, err := parseNetwork(n)
		if err != nil {
			v.addf(fmt.Sprintf("%s.allowed_networks[%d]", section, i), "%v", err)
			continue
		}
		out = append(out, p)
	}
	if !l.IsLoopback() && len(nets) == 0 {
		v.addf(section+".listen", "%s is reachable from the network: list the Postfix hosts in %s.allowed_networks, or bind to 127.0.0.1", listen, section)
	}
	return l, out
}

// transport checks lmtp.transport, or derives it from lmtp.listen.
func (v *validator) transport() {
	l := &v.cfg.LMTP
	if l.Transport != "" {
		name, hop, ok := strings.Cut(l.Transport, ":")
		if !ok || name == "" || hop == "" || strings.ContainsAny(l.Transport, " \t,") {
			v.addf("lmtp.transport", "%q: write it as in transport_maps, transport:nexthop (lmtp:[127.0.0.1]:8024, lmtp:unix:/path)", l.Transport)
		}
	}
}

// Route is the transport_maps value that reaches the LMTP endpoint:
// lmtp.transport, or the one derived from lmtp.listen.
func (l *LMTP) Route() string {
	if l.Transport != "" {
		return l.Transport
	}
	return DefaultTransport(l.Addr)
}

// DefaultTransport is the transport_maps value that reaches an LMTP
// listener at addr ("" for none): lmtp:[host]:port — a wildcard address is
// reached on loopback — or lmtp:unix:/path.
func DefaultTransport(addr Listen) string {
	switch addr.Network {
	case "unix":
		return "lmtp:unix:" + addr.Address
	case "tcp":
		host, port, err := net.SplitHostPort(addr.Address)
		if err != nil {
			return ""
		}
		switch host {
		case "", "0.0.0.0":
			host = "127.0.0.1"
		case "::":
			host = "::1"
		}
		if strings.Contains(host, ":") {
			host = "ipv6:" + host
		}
		return "lmtp:[" + host + "]:" + port
	}
	return ""
}

func (v *validator) relay() {
	r := &v.cfg.Relay
	host, port, err := net.SplitHostPort(r.Address)
	if err != nil || host == "" {
		v.addf("relay.address", "%q is not host:port (e.g. \"smtp-relay.gmail.com:587\")", r.Address)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		v.addf("relay.address", "port %q is not a number from 1 to 65535", port)
	}
	v.oneOf("relay.tls", r.TLS, "none", "starttls", "tls")
	if r.TLS == "none" && host != "" && !isLoopbackHost(host) {
		v.warnf("relay.tls", "\"none\" sends every copy to %s in clear text; use \"starttls\" or \"tls\"", host)
	}
	if r.CAFile != "" {
		r.CAFile = v.path(r.CAFile)
		if pemData, err := os.ReadFile(r.CAFile); err != nil {
			v.addf("relay.ca_file", "cannot read: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pemData) {
			v.addf("relay.ca_file", "%s holds no PEM certificate", r.CAFile)
		}
	}
	switch {
	case r.Username != "" && r.PasswordFile == "":
		v.addf("relay.password_file", "relay.username is set, so the password file must be too")
	case r.Username == "" && r.PasswordFile != "":
		v.addf("relay.username", "relay.password_file is set, so the username must be too")
	case r.Username != "" && r.TLS == "none":
		v.addf("relay.tls", "\"none\" with a username would send the password in clear text; use \"starttls\" or \"tls\"")
	}
	if r.PasswordFile != "" {
		r.PasswordFile = v.path(r.PasswordFile)
		v.secretFile("relay.password_file", r.PasswordFile)
		if data, err := os.ReadFile(r.PasswordFile); err != nil {
			v.addf("relay.password_file", "cannot read: %v", err)
		} else if r.Password = strings.TrimRight(string(data), "\r\n"); r.Password == "" {
			v.addf("relay.password_file", "%s is empty", r.PasswordFile)
		}
	}
	if r.HeloName == "" {
		r.HeloName = v.cfg.Hostname
	}
	if r.MaxRecipients < 1 || r.MaxRecipients > 1000 {
		v.addf("relay.max_recipients", "must be from 1 to 1000, not %d (RFC 5321 servers must take 100; Gmail takes 100)", r.MaxRecipients)
	}
	if r.Connections < 1 || r.Connections > 64 {
		v.addf("relay.connections", "must be from 1 to 64, not %d", r.Connections)
	}
	if r.ConnectTimeout.D() <= 0 {
		v.addf("relay.connect_timeout", "must be longer than 0")
	}
	if r.CommandTimeout.D() <= 0 {
		v.addf("relay.command_timeout", "must be longer than 0")
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// secretFile warns when a password or key file can be read by anyone.
func (v *validator) secretFile(key, path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
		v.warnf(key, "%s is readable by every user (mode %#o); chmod 0600 or 0640", path, fi.Mode().Perm())
	}
}

func (v *validator) tokens() {
	t := &v.cfg.Tokens
	if t.Prefix == "" {
		v.addf("tokens.prefix", "must not be empty: a token file is recognised by it")
	}
	for i := 0; i < len(t.Prefix); i++ {
		if c := t.Prefix[i]; c <= ' ' || c > '~' {
			v.addf("tokens.prefix", "%q: use printable ASCII without spaces", t.Prefix)
			break
		}
	}
	if !validFieldName(t.Header) {
		v.addf("tokens.header", "%q is not a header field name", t.Header)
	}
	if t.DefaultUses < 1 {
		v.addf("tokens.default_uses", "must be at least 1, not %d", t.DefaultUses)
	}
	switch {
	case t.GuessLimit < 0:
		v.addf("tokens.guess_limit", "must be 0 (off) or more, not %d", t.GuessLimit)
	case t.GuessLimit > 0 && t.GuessWindow.D() <= 0:
		v.addf("tokens.guess_window", "must be longer than 0 while guess_limit is set (guess_limit = 0 turns the limit off)")
	case t.GuessLimit > 0 && t.GuessBlock.D() <= 0:
		v.addf("tokens.guess_block", "must be longer than 0 while guess_limit is set (guess_limit = 0 turns the limit off)")
	}
	t.GuessTrusted = nil
	for i, n := range t.GuessTrustedNetworks {
		p, err := parseNetwork(n)
		if err != nil {
			v.addf(fmt.Sprintf("tokens.guess_trusted_networks[%d]", i), "%v", err)
			continue
		}
		t.GuessTrusted = append(t.GuessTrusted, p)
	}
}

func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

func (v *validator) dkim() {
	v.cfg.keys = map[string]*DKIM{}
	for i := range v.cfg.DKIM {
		k := &v.cfg.DKIM[i]
		key := fmt.Sprintf("dkim[%d]", i)
		d, err := address.Domain(k.Domain)
		if err != nil {
			v.addf(key+".domain", "%q is not a domain", k.Domain)
		} else {
			k.Domain = d
			if v.cfg.keys[d] != nil {
				v.addf(key+".domain", "%s has two keys; give each domain one [[dkim]]", d)
			}
			v.cfg.keys[d] = k
		}
		if _, err := address.Domain(k.Selector); err != nil || k.Selector == "" {
			v.addf(key+".selector", "%q is not a DKIM selector (letters, digits, '-', dots)", k.Selector)
		}
		if k.PrivateKeyFile == "" {
			v.addf(key+".private_key_file", "must name the private key (PEM)")
			continue
		}
		k.PrivateKeyFile = v.path(k.PrivateKeyFile)
		v.secretFile(key+".private_key_file", k.PrivateKeyFile)
		signer, warn, err := LoadKey(k.PrivateKeyFile)
		if err != nil {
			v.addf(key+".private_key_file", "%v", err)
			continue
		}
		if warn != "" {
			v.warnf(key+".private_key_file", "%s", warn)
		}
		k.Signer = signer
	}
}

// LoadKey reads a PEM private key for DKIM: RSA (PKCS#1 or PKCS#8) of at
// least 1024 bits, or Ed25519 (PKCS#8). RFC 8301 forbids shorter RSA keys;
// under 2048 bits is allowed but warned about.
func LoadKey(path string) (signer crypto.Signer, warning string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("cannot read: %v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", fmt.Errorf("%s is not a PEM file", path)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, "", fmt.Errorf("%s holds a %q block; want an RSA or Ed25519 private key", path, block.Type)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", path, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		bits := k.N.BitLen()
		if bits < 1024 {
			return nil, "", fmt.Errorf("%s: RSA key of %d bits; DKIM needs at least 1024 (RFC 8301)", path, bits)
		}
		if bits < 2048 {
			warning = fmt.Sprintf("%s: RSA key of %d bits; 2048 is the usual minimum", path, bits)
		}
		return k, warning, nil
	case ed25519.PrivateKey:
		return k, "", nil
	}
	return nil, "", fmt.Errorf("%s: a %T key cannot sign DKIM; use RSA or Ed25519", path, key)
}

func (v *validator) lists() {
	c := v.cfg
	c.byAddr = map[string]*List{}
	if len(c.Lists) == 0 {
		v.warnf("lists", "no [[lists]]: no address is restricted, and the milter lets all mail pass")
	}
	for i := range c.Lists {
		l := &c.Lists[i]
		key := fmt.Sprintf("lists[%d]", i)
		a, err := address.Parse(l.Address)
		switch {
		case err != nil:
			v.addf(key+".address", "%q: %v", l.Address, err)
		case c.byAddr[a.Key()] != nil:
			v.addf(key+".address", "%s is configured twice", a)
		case c.RecipientDelimiter != "" && strings.ContainsAny(a.Local, c.RecipientDelimiter):
			v.addf(key+".address", "%s contains the recipient delimiter %q; Postfix would take the rest as a subaddress", a, c.RecipientDelimiter)
		default:
			l.Addr = a
			c.byAddr[a.Key()] = l
			if c.KeyFor(a.Domain) == nil {
				v.warnf(key+".address", "no [[dkim]] key for %s: copies will go out unsigned and fail DMARC at strict receivers", a.Domain)
			}
		}
		if l.Name == "" {
			l.Name = l.Address
		}
		if strings.ContainsAny(l.Name, "\r\n") {
			v.addf(key+".name", "must be one line")
		}
		if l.BounceAddress == "" {
			v.addf(key+".bounce_address", "missing: the copies need an envelope sender that collects bounces (RFC 5321 §3.9)")
		} else if b, err := address.Parse(l.BounceAddress); err != nil {
			v.addf(key+".bounce_address", "%q: %v", l.BounceAddress, err)
		} else if b.Equal(a) {
			v.addf(key+".bounce_address", "must differ from the list address, or bounces would be redistributed")
		} else {
			if c.RecipientDelimiter != "" && strings.ContainsAny(b.Local, c.RecipientDelimiter) {
				v.warnf(key+".bounce_address", "%s contains the recipient delimiter %q: Postfix takes the rest as a subaddress, so the copies' tagged bounces will not reach it; choose a bounce address without it", b, c.RecipientDelimiter)
			}
			l.Bounce = b
		}
		l.AliasAddrs = nil
		for j, s := range l.Aliases {
			ak := fmt.Sprintf("%s.aliases[%d]", key, j)
			al, err := address.Parse(s)
			switch {
			case err != nil:
				v.addf(ak, "%q: %v", s, err)
			case c.byAddr[al.Key()] != nil || al.Equal(a):
				v.addf(ak, "%s is a list address or an alias of another list", al)
			default:
				l.AliasAddrs = append(l.AliasAddrs, al)
				c.byAddr[al.Key()] = l
			}
		}
		switch l.Report {
		case "":
			l.Report = "none"
		case "none", "summary", "failures":
		default:
			v.addf(key+".report", "%q is not one of none, summary, failures", l.Report)
		}
		l.BounceFwd = address.Address{}
		if l.BounceForward != "" {
			if f, err := address.Parse(l.BounceForward); err != nil {
				v.addf(key+".bounce_forward", "%q: %v", l.BounceForward, err)
			} else {
				l.BounceFwd = f
			}
		}
		if l.ListID != "" && !validListID(l.ListID) {
			v.addf(key+".list_id", "%q is not a List-Id (RFC 2919: dot-separated words such as \"board.example.org\")", l.ListID)
		}
		v.members(key, l)
	}
	// Mail to a bounce address is never redistributed: its forward may
	// not lead back to a list, nor to a bounce address.
	for i := range c.Lists {
		f := c.Lists[i].BounceFwd
		if f.IsZero() {
			continue
		}
		if c.byAddr[f.Key()] != nil {
			v.addf(fmt.Sprintf("lists[%d].bounce_forward", i), "%s is a list address: mail to the bounce address would be redistributed", f)
		}
		for j := range c.Lists {
			if b := c.Lists[j].Bounce; !b.IsZero() && b.Equal(f) {
				v.addf(fmt.Sprintf("lists[%d].bounce_forward", i), "%s is a bounce address: it would loop", f)
			}
		}
	}
}

func validListID(s string) bool {
	_, err := address.Domain(s)
	return err == nil && strings.Contains(s, ".")
}

// members reads recipients and recipients_file into l.Members. A list can
// have 100,000 members, so this is careful with memory: the file is read
// into one string that the members point into (a clean line costs no
// allocation), duplicates are found by sorting indexes rather than with a
// map, and nothing is formatted unless a line is wrong.
func (v *validator) members(key string, l *List) {
	data := ""
	if l.RecipientsFile != "" {
		l.RecipientsFile = v.path(l.RecipientsFile)
		var err error
		if data, err = readString(l.RecipientsFile); err != nil {
			v.addf(key+".recipients_file", "cannot read: %v", err)
		}
	}
	n := len(l.Recipients) + strings.Count(data, "\n") + 1
	all := make([]string, 0, n) // canonical forms, in order, duplicates included
	// The comparison key of a member is its canonical form with the local
	// part lower-cased: the form itself, except for the few members
	// written with capitals, whose keys are kept here.
	keys := map[int32]string{}
	add := func(k string, where func() string, s string) {
		a, err := address.Parse(s)
		if err != nil {
			v.addf(k, "%s%q: %v", where(), s, err)
			return
		}
		if a.Equal(l.Addr) {
			v.addf(k, "%s%s is the list itself; it would loop", where(), a)
			return
		}
		// The canonical form is usually the line itself: keep pointing
		// into it rather than building a copy; so is the key.
		str := strings.TrimSpace(s)
		if !isForm(str, a) {
			str = a.String()
		}
		if lower := strings.ToLower(a.Local); lower != a.Local {
			keys[int32(len(all))] = lower + "@" + a.Domain
		}
		all = append(all, str)
	}
	for i, r := range l.Recipients {
		add(fmt.Sprintf("%s.recipients[%d]", key, i), func() string { return "" }, r)
	}
	for n := 1; data != ""; n++ {
		line, rest, _ := strings.Cut(data, "\n")
		data = rest
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		add(key+".recipients_file", func() string { return fmt.Sprintf("%s line %d: ", l.RecipientsFile, n) }, line)
	}
	l.Members = dedupe(all, keys)
}

// dedupe returns the items whose key has not appeared before, in order.
// An item's key is keys[i] when present, else the item itself.
func dedupe(items []string, keys map[int32]string) []string {
	key := func(i int32) string {
		if k, ok := keys[i]; ok {
			return k
		}
		return items[i]
	}
	idx := make([]int32, len(items))
	for i := range idx {
		idx[i] = int32(i)
	}
	// Ties broken by index, so that the first occurrence sorts first.
	slices.SortFunc(idx, func(a, b int32) int {
		if c := strings.Compare(key(a), key(b)); c != 0 {
			return c
		}
		return int(a - b)
	})
	dup := make([]bool, len(items))
	for i := 1; i < len(idx); i++ {
		if key(idx[i]) == key(idx[i-1]) {
			dup[idx[i]] = true
		}
	}
	out := items[:0]
	for i, it := range items {
		if !dup[i] {
			out = append(out, it)
		}
	}
	return slices.Clip(out)
}

// readString reads a whole file into a string with a single allocation
// of its size (os.ReadFile and a conversion would copy it once more).
func readString(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	if fi, err := f.Stat(); err == nil {
		b.Grow(int(fi.Size()) + 1)
	}
	if _, err := io.Copy(&b, f); err != nil {
		return "", err
	}
	return b.String(), nil
}

// isForm reports whether s is exactly a.Local + "@" + a.Domain.
func isForm(s string, a address.Address) bool {
	n := len(a.Local)
	return len(s) == n+1+len(a.Domain) && s[:n] == a.Local && s[n] == '@' && s[n+1:] == a.Domain
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
