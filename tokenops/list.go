package tokenops

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
)

// MaxPageSize bounds a page of tokens; DefaultPageSize is a page without
// a limit.
const (
	MaxPageSize     = 200
	DefaultPageSize = 50
)

// Query selects a page of the tokens of one list.
type Query struct {
	List   string           // restricted address (required)
	Owner  string           // "" for any
	State  store.TokenState // "" for any
	Cursor string           // from the previous page's Next; "" for the first page
	Limit  int              // 0: DefaultPageSize
}

// Page is one page of tokens, newest first, with the counts of the whole
// selection by state (for badges) and the cursor of the next page ("" on
// the last).
type Page struct {
	store.TokenPage
	Total int64 // tokens the query selects, over all pages
	Next  string
}

// Tokens returns a page of q's tokens.
func (o *Ops) Tokens(ctx context.Context, q Query) (Page, error) {
	l, err := o.List(q.List)
	if err != nil {
		return Page{}, err
	}
	sq := store.TokenQuery{List: l.Addr.Key(), Owner: q.Owner, State: q.State, Limit: q.Limit, Now: o.now()}
	switch {
	case q.Limit == 0:
		sq.Limit = DefaultPageSize
	case q.Limit < 0 || q.Limit > MaxPageSize:
		return Page{}, fieldErr("limit", "must be from 1 to %d", MaxPageSize)
	}
	switch q.State {
	case "", store.StateActive, store.StateUsed, store.StateExpired, store.StateRevoked:
	default:
		return Page{}, fieldErr("state", "must be one of active, used, expired, revoked")
	}
	if q.Cursor != "" {
		c, err := DecodeCursor(q.Cursor)
		if err != nil {
			return Page{}, fieldErr("cursor", "is not a cursor this server gave out")
		}
		sq.After = &c
	}
	tp, err := o.st.ListTokens(ctx, sq)
	if err != nil {
		return Page{}, err
	}
	p := Page{TokenPage: tp, Total: tp.Counts.Of(q.State)}
	if tp.Next != nil {
		p.Next = EncodeCursor(*tp.Next)
	}
	return p, nil
}

// EncodeCursor writes c as an opaque string.
func EncodeCursor(c store.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Created.Unix(), 10) + "." + c.ID))
}

// DecodeCursor reads a cursor EncodeCursor wrote.
func DecodeCursor(s string) (store.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 64 {
		return store.Cursor{}, errors.New("malformed cursor")
	}
	sec, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if !ok || err != nil || n < 0 || id == "" {
		return store.Cursor{}, errors.New("malformed cursor")
	}
	var t time.Time
	if n > 0 {
		t = time.Unix(n, 0).UTC()
	}
	return store.Cursor{Created: t, ID: id}, nil
}

// ListInfo is one restricted list as a portal sees it.
type ListInfo struct {
	Address           string // canonical form
	Key               string // address.Key form
	Name              string
	DefaultRecipients int
	HideSender        bool
	store.ListSummary
}

// Lists returns the restricted lists for which keep says yes (every list
// when keep is nil), in the configuration's order, with their counts.
func (o *Ops) Lists(ctx context.Context, keep func(key string) bool) ([]ListInfo, error) {
	sums, err := o.st.ListSummaries(ctx, o.now())
	if err != nil {
		return nil, err
	}
	var out []ListInfo
	for _, l := range o.set.Rules.Lists {
		k := l.Addr.Key()
		if keep != nil && !keep(k) {
			continue
		}
		out = append(out, ListInfo{
			Address: l.Addr.String(), Key: k, Name: l.Name, DefaultRecipients: len(l.Members),
			HideSender: l.HideSender, ListSummary: sums[k],
		})
	}
	return out, nil
}
