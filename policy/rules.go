package policy

import (
	"net/netip"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/token"
)

// List is one restricted address as the core sees it. The daemon builds it
// from the configuration's [[lists]]; it is read-only once built, and
// deliveries share its Members.
type List struct {
	Addr       address.Address
	Bounce     address.Address // envelope sender of the copies
	Name       string          // display name of the copies' From
	ListID     string          // "" derives it from Addr (ID)
	HideSender bool
	// Members are the default recipients, distinct ignoring case, in
	// canonical form.
	Members []string
	// Aliases are addresses that Postfix rewrites to this list (a
	// virtual alias) and that the administrator declared as intended: the
	// milter judges them as the list at SMTP time, where it cannot see the
	// alias expanded.
	Aliases []address.Address
	// Report is the report its senders get by default: "none",
	// "summary" or "failures" ("" is none); a token's overrides it.
	Report string
	// BounceForward receives mail to the bounce address that is no
	// recognisable delivery status notification; zero: dropped (logged).
	BounceForward address.Address
}

// ReportOf is the report a delivery of l authorised by rec asks for.
func ReportOf(l *List, rec *token.Record) string {
	r := l.Report
	if rec != nil && rec.Report != "" {
		r = rec.Report
	}
	if r == "" {
		return "none"
	}
	return r
}

// ID returns the List-Id of RFC 2919: ListID, or the address with its @
// turned into a dot ("board.example.org").
func (l *List) ID() string {
	if l.ListID != "" {
		return l.ListID
	}
	return l.Addr.Local + "." + l.Addr.Domain
}

// IssueDefaults are what `token issue` and its peers use when a request
// leaves a field out.
type IssueDefaults struct {
	TTL  time.Duration // 0: tokens never expire
	Uses int
}

// Rules is everything the decision needs from one configuration
// generation: the restricted addresses, the recipient delimiter and the
// token carriers. A message is judged with one Rules from its first
// command to its last, so that a reload never mixes two generations.
type Rules struct {
	Lists     []*List
	Delimiter string       // recipient_delimiter: the characters that start a subaddress
	Finder    token.Finder // token-file prefix and token header
	Issue     IssueDefaults
	// Source names where the rules come from (the configuration file),
	// for error messages.
	Source string
	// Transport is the transport_maps value that routes a list to the
	// LMTP endpoint ("lmtp:[127.0.0.1]:8024"): a recipient Postfix routes
	// there is restricted, whatever its spelling ("" : unknown).
	Transport string
	// GuessTrusted are the networks of shared upstreams (Google Workspace
	// forwarding, say) whose address alone is never blocked by the guard:
	// only a (client, sender) pair from them is.
	GuessTrusted []netip.Prefix

	byKey   map[string]*List // address.FoldKey of every list address and alias
	bounces map[string]*List // address.FoldKey of every list's bounce address
}

// NewRules indexes lists and their aliases by the key Postfix's tables
// compare (address.FoldKey). Lists with a zero address are ignored.
func NewRules(delim string, finder token.Finder, lists []*List) *Rules {
	r := &Rules{Lists: lists, Delimiter: delim, Finder: finder, byKey: make(map[string]*List, len(lists)),
		bounces: make(map[string]*List, len(lists))}
	for _, l := range lists {
		if l.Addr.IsZero() {
			continue
		}
		if !l.Bounce.IsZero() {
			r.bounces[l.Bounce.FoldKey()] = l
		}
		r.byKey[l.Addr.FoldKey()] = l
		for _, a := range l.Aliases {
			if _, taken := r.byKey[a.FoldKey()]; !taken {
				r.byKey[a.FoldKey()] = l
			}
		}
	}
	return r
}

// List returns the restricted list at address a, or an alias of it
// (subaddress already removed), or nil.
func (r *Rules) List(a address.Address) *List { return r.byKey[a.FoldKey()] }

// ListFor returns the list that rcpt is addressed to, with or without a
// subaddress, and the subaddress extension.
func (r *Rules) ListFor(rcpt address.Address) (l *List, extension string) {
	if l := r.List(rcpt); l != nil {
		return l, ""
	}
	base, ext, ok := rcpt.SplitSubaddress(r.Delimiter)
	if !ok {
		return nil, ""
	}
	// The extension of an address that is no list is nobody's token.
	if l := r.List(base); l != nil {
		return l, ext
	}
	return nil, ""
}

// Addresses returns the address of every restricted list.
func (r *Rules) Addresses() []address.Address {
	out := make([]address.Address, 0, len(r.Lists))
	for _, l := range r.Lists {
		out = append(out, l.Addr)
	}
	return out
}

// Keys returns the address.FoldKey of every restricted list and alias.
func (r *Rules) Keys() []string {
	out := make([]string, 0, len(r.byKey))
	for k := range r.byKey {
		out = append(out, k)
	}
	return out
}

// Recipient is one recipient of a transaction, resolved against the rules.
type Recipient struct {
	Raw   string // exactly as given (the LMTP status is reported for it)
	List  *List  // nil: not a restricted address
	Token string // the subaddress token, if the extension is one
}

// Resolve parses rcpt as Postfix does (address.ParseEnvelope: quotes and
// source routes removed, any local part, case folded as Postfix's tables
// fold it) and finds its list — the list address, an alias, or either
// with an extension — and the subaddress token. The milter and the LMTP
// endpoint both resolve with it, so that they match what Postfix routes.
// An unparsable address is an error; an ordinary one has a nil List.
func (r *Rules) Resolve(rcpt string) (Recipient, error) {
	a, err := address.ParseEnvelope(rcpt)
	if err != nil {
		return Recipient{Raw: rcpt}, err
	}
	rc := Recipient{Raw: rcpt}
	l, ext := r.ListFor(a)
	if l == nil {
		return rc, nil
	}
	rc.List, rc.Token = l, token.FromExtension(ext)
	return rc, nil
}

// GuessKeys are the guard's keys for an unknown token from SMTP client
// address client with envelope sender sender: the pair, and the client
// alone unless it is in a trusted upstream network.
func (r *Rules) GuessKeys(client, sender string) []string {
	keys := []string{guard.PairKey(client, sender)}
	a, err := netip.ParseAddr(strings.Trim(client, "[]"))
	trusted := false
	for _, p := range r.GuessTrusted {
		if err == nil && p.Contains(a.Unmap()) {
			trusted = true
			break
		}
	}
	if !trusted {
		keys = append(keys, guard.ClientKey(client))
	}
	return keys
}

// RoutesToUs reports whether a recipient that Postfix resolved to transport
// mailer and next hop host ({rcpt_mailer}, {rcpt_host}) goes to the LMTP
// endpoint: whatever the transport's name (the generic lmtp, or a named
// service in master.cf), the next hop is the endpoint's (SameNexthop).
func (r *Rules) RoutesToUs(mailer, host string) bool {
	_, hop, ok := strings.Cut(r.Transport, ":")
	if !ok || mailer == "" || strings.EqualFold(mailer, "error") || strings.EqualFold(mailer, "discard") {
		return false
	}
	return SameNexthop(host, hop)
}

// SameNexthop compares two Postfix next hops of the LMTP client the way
// the question "is it this endpoint?" needs: case, brackets and an inet:
// prefix ignored ("inet:127.0.0.1:8024", "[127.0.0.1]:8024").
// It allocates nothing: the milter asks it for every recipient.
func SameNexthop(a, b string) bool {
	trim := func(s string) string {
		s = strings.TrimSpace(s)
		if len(s) >= 5 && strings.EqualFold(s[:5], "inet:") {
			s = s[5:]
		}
		return s
	}
	a, b = trim(a), trim(b)
	if a == "" {
		return false
	}
	i, j := 0, 0
	for {
		for i < len(a) && (a[i] == '[' || a[i] == ']') {
			i++
		}
		for j < len(b) && (b[j] == '[' || b[j] == ']') {
			j++
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		ca, cb := a[i], b[j]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
		i, j = i+1, j+1
	}
}

// Group is the recipients of one transaction that name one list: board@
// and board+token@ are one delivery, judged once.
type Group struct {
	List  *List
	Rcpts []Recipient
	// Token is the first subaddress token among them: the one a delivery
	// is judged with when the message carries no other.
	Token string
}

// GroupByList groups the restricted recipients of rs by list, in the order
// the lists first appear; ordinary recipients are left out.
func GroupByList(rs []Recipient) []Group {
	var out []Group
	for _, rc := range rs {
		if rc.List == nil {
			continue
		}
		i := 0
		for i < len(out) && out[i].List != rc.List {
			i++
		}
		if i == len(out) {
			out = append(out, Group{List: rc.List})
		}
		g := &out[i]
		g.Rcpts = append(g.Rcpts, rc)
		if g.Token == "" {
			g.Token = rc.Token
		}
	}
	return out
}

// RecipientsOf expands a delivery's recipients: the token's own, or else
// the list's (shared, read-only). They are distinct, ignoring case, as the
// journal and the relay expect.
func RecipientsOf(l *List, rec *token.Record) []string {
	if len(rec.Recipients) == 0 {
		return l.Members
	}
	seen := make(map[string]bool, len(rec.Recipients))
	out := make([]string, 0, len(rec.Recipients))
	for _, r := range rec.Recipients {
		if k := strings.ToLower(r); !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out
}
