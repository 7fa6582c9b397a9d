package policy

import (
	"strings"

	"github.com/restrictedmail/restrictedmail/address"
)

// Bounce addresses carry the delivery they belong to (VERP): the copies of
// a delivery are sent with the envelope sender
// <bounce-local><delimiter><tag>@<bounce-domain>, so that a delivery
// status notification names its delivery by the address it is sent to.
// The tag is the journal's random per-delivery tag, never the token.

// BounceEnvelope is the envelope sender of l's copies for a delivery
// tagged tag: the bounce address with the tag as its subaddress, using
// the first character of the recipient delimiter. Without a delimiter (or
// a tag) it is the plain bounce address: Postfix could not route a
// subaddress to it.
func (r *Rules) BounceEnvelope(l *List, tag string) string {
	if tag == "" || r.Delimiter == "" {
		return l.Bounce.String()
	}
	return l.Bounce.Local + r.Delimiter[:1] + tag + "@" + l.Bounce.Domain
}

// BounceFor returns the list whose bounce address rcpt is, with or
// without a subaddress, and the subaddress (the delivery's tag, or "").
func (r *Rules) BounceFor(rcpt address.Address) (l *List, tag string) {
	if l := r.bounces[rcpt.FoldKey()]; l != nil {
		return l, ""
	}
	base, ext, ok := rcpt.SplitSubaddress(r.Delimiter)
	if !ok {
		return nil, ""
	}
	if l := r.bounces[base.FoldKey()]; l != nil {
		return l, strings.ToLower(ext)
	}
	return nil, ""
}

// ResolveBounce is BounceFor for an envelope address as Postfix gives it.
func (r *Rules) ResolveBounce(rcpt string) (l *List, tag string) {
	a, err := address.ParseEnvelope(rcpt)
	if err != nil {
		return nil, ""
	}
	return r.BounceFor(a)
}

// IsBounceAddress reports whether rcpt is a list's bounce address, with or
// without a subaddress.
func (r *Rules) IsBounceAddress(rcpt string) bool {
	l, _ := r.ResolveBounce(rcpt)
	return l != nil
}
