package policy

import (
	"fmt"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/token"
)

// IssueError says which field of an IssueRequest is wrong.
type IssueError struct {
	Field string // "list", "sender", "ttl", "uses", "recipient"
	Msg   string
}

func (e *IssueError) Error() string { return e.Field + " " + e.Msg }

func issueErr(field, format string, args ...any) error {
	return &IssueError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// IssueRequest is what an administrator asks for when issuing a token.
type IssueRequest struct {
	List       string         // restricted address (required)
	Sender     string         // bind to this sender; "" for any
	TTL        *time.Duration // nil: tokens.default_ttl; 0: never expires
	Uses       int            // 0: tokens.default_uses
	Recipients []string       // replace the list's recipients
	HideSender bool
}

// NewToken checks req against rules and returns a new token with the record
// a store keeps for it (which holds only the token's hash). The token is
// shown to the administrator once and never again.
func NewToken(rules *Rules, req IssueRequest, now time.Time) (string, token.Record, error) {
	la, err := address.Parse(req.List)
	if err != nil {
		return "", token.Record{}, issueErr("list", "%q: %v", req.List, err)
	}
	l := rules.List(la)
	if l == nil {
		return "", token.Record{}, issueErr("list", "%s is not a restricted address in %s", la, rules.Source)
	}
	rec := token.Record{
		ID:          token.NewID(),
		List:        l.Addr.Key(),
		Created:     now.UTC().Truncate(time.Second),
		UsesAllowed: rules.Issue.Uses,
		HideSender:  req.HideSender,
	}
	if req.Sender != "" {
		s, err := address.Parse(req.Sender)
		if err != nil {
			return "", token.Record{}, issueErr("sender", "%q: %v", req.Sender, err)
		}
		rec.Sender = s.Key()
	}
	switch {
	case req.Uses < 0:
		return "", token.Record{}, issueErr("uses", "must be at least 1, not %d", req.Uses)
	case req.Uses > 0:
		rec.UsesAllowed = req.Uses
	}
	ttl := rules.Issue.TTL
	if req.TTL != nil {
		ttl = *req.TTL
	}
	if ttl < 0 {
		return "", token.Record{}, issueErr("ttl", "must not be negative")
	}
	if ttl > 0 {
		rec.Expires = rec.Created.Add(ttl)
	}
	for _, r := range req.Recipients {
		a, err := address.Parse(r)
		if err != nil {
			return "", token.Record{}, issueErr("recipient", "%q: %v", r, err)
		}
		if a.Equal(l.Addr) {
			return "", token.Record{}, issueErr("recipient", "%s is the list itself; it would loop", a)
		}
		rec.Recipients = append(rec.Recipients, a.String())
	}
	if len(rec.Recipients) == 0 && len(l.Members) == 0 {
		return "", token.Record{}, issueErr("recipient", "is required: %s has no default recipients", l.Addr)
	}
	tok := token.Generate()
	rec.Hash = token.HashOf(tok)
	return tok, rec, nil
}
