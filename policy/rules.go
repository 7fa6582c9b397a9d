package policy

import (
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
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

	byKey map[string]*List
}

// NewRules indexes lists. Lists with a zero address are ignored.
func NewRules(delim string, finder token.Finder, lists []*List) *Rules {
	r := &Rules{Lists: lists, Delimiter: delim, Finder: finder, byKey: make(map[string]*List, len(lists))}
	for _, l := range lists {
		if !l.Addr.IsZero() {
			r.byKey[l.Addr.Key()] = l
		}
	}
	return r
}

// List returns the restricted list at address a (subaddress already
// removed), or nil.
func (r *Rules) List(a address.Address) *List { return r.byKey[a.Key()] }

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

// Keys returns the address.Key of every restricted list.
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

// Resolve parses rcpt and finds its list and subaddress token. An
// unparsable address is an error; an ordinary one has a nil List.
func (r *Rules) Resolve(rcpt string) (Recipient, error) {
	a, err := address.Parse(rcpt)
	if err != nil {
		return Recipient{Raw: rcpt}, err
	}
	return r.resolve(rcpt, a), nil
}

func (r *Rules) resolve(raw string, a address.Address) Recipient {
	rc := Recipient{Raw: raw}
	l, _ := r.ListFor(a)
	if l == nil {
		return rc
	}
	rc.List = l
	if !l.Addr.Equal(a) {
		_, rc.Token = token.Subaddress(a, r.Delimiter)
	}
	return rc
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
