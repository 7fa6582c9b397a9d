// Package tokenops is the one implementation of every operation on
// posting tokens — issue, read, list, re-key, revoke, replace recipients,
// read deliveries, import from LEGO — shared by the `restrictedmail token`
// commands and the HTTP API, so that both apply the same defaults, limits
// and validation. It takes its own Settings (the rules of the
// configuration in force and the limits), never a configuration type, and
// a store that satisfies Store.
//
// The plain token exists only in the value Issue and Rekey return: the
// store keeps its hash, and nothing here logs it.
package tokenops

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// Store is what the operations need; *store.DB satisfies it.
type Store interface {
	IssueToken(ctx context.Context, r token.Record, idem *store.Idempotency, now time.Time) (token.Record, bool, error)
	TokenByID(ctx context.Context, id string) (token.Record, error)
	TokenByHash(ctx context.Context, h token.Hash) (token.Record, error)
	Tokens(ctx context.Context) ([]token.Record, error)
	RevokeToken(ctx context.Context, id string) error
	RekeyToken(ctx context.Context, id string, h token.Hash, now time.Time) (token.Record, error)
	SetTokenRecipients(ctx context.Context, id string, rcpts []string, now time.Time) (token.Record, error)
	ListTokens(ctx context.Context, q store.TokenQuery) (store.TokenPage, error)
	ListSummaries(ctx context.Context, now time.Time) (map[string]store.ListSummary, error)
	TokenDeliveries(ctx context.Context, id string, maxRecipients int) ([]store.DeliveryDetail, error)
}

var _ Store = (*store.DB)(nil)

// DefaultMaxRecipients bounds the recipients one token may name unless
// Settings say otherwise; a larger audience belongs in the list's
// recipients_file.
const DefaultMaxRecipients = 5000

// MaxTextLength bounds Owner and ExternalRef, in bytes.
const MaxTextLength = 256

// Settings are what one configuration generation gives the operations.
type Settings struct {
	Rules         *policy.Rules // the lists, token defaults, token-file prefix
	MaxRecipients int           // per token; 0: DefaultMaxRecipients
}

func (s Settings) maxRecipients() int {
	if s.MaxRecipients > 0 {
		return s.MaxRecipients
	}
	return DefaultMaxRecipients
}

// Ops runs the operations on one store with one Settings. It is cheap to
// build: build one per request or command.
type Ops struct {
	st  Store
	set Settings
	now func() time.Time
}

// New returns the operations on st with set.
func New(st Store, set Settings) *Ops { return &Ops{st: st, set: set, now: time.Now} }

// WithClock returns o with another clock (tests).
func (o *Ops) WithClock(now func() time.Time) *Ops {
	c := *o
	c.now = now
	return &c
}

// Settings returns o's settings.
func (o *Ops) Settings() Settings { return o.set }

// FieldError says which field of a request is wrong, in words for the
// person who sent it (never internal text).
type FieldError struct {
	Field string // "list", "sender", "ttl", "uses", "recipients", "owner", "external_ref"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ErrUnknownList is returned for an address that is not a restricted
// address of the configuration in force.
var ErrUnknownList = errors.New("not a restricted address")

// Refusals of operations on tokens that exist, as store reports them:
// token.ErrNotFound, token.ErrRevoked, token.ErrExpired, token.ErrUsedUp,
// and store.ErrIdempotencyMismatch for Issue.

// List returns the restricted list at addr (any form), or ErrUnknownList.
func (o *Ops) List(addr string) (*policy.List, error) {
	a, err := address.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownList, addr)
	}
	l := o.set.Rules.List(a)
	if l == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownList, a)
	}
	return l, nil
}

// IssueRequest is what an administrator or a portal asks for.
type IssueRequest struct {
	List        string         // restricted address (required)
	Sender      string         // bind to this sender; "" for any
	TTL         *time.Duration // nil: the default; 0: never expires
	Uses        int            // 0: the default
	Recipients  []string       // replace the list's recipients
	HideSender  bool
	Owner       string // opaque, for the portal
	ExternalRef string // opaque, for the portal
	// Report overrides the list's report to the sender: "none",
	// "summary", "failures"; "" takes the list's.
	Report string
	// Idempotency makes the request safe to retry: a second request with
	// the same Key in the same Scope returns the token recorded the first
	// time, without its secret (Issued.Replayed). nil: none.
	Idempotency *Idempotency
}

// Idempotency names an idempotency key and whose it is.
type Idempotency struct {
	Scope string // whose keys these are (an API key's id)
	Key   string
}

// Issued is a token as it is handed out: its secret and token file, once.
type Issued struct {
	Record token.Record
	// Token and File are the secret and the token file (prefix + token +
	// newline); both empty for a replay, which never shows the secret
	// again (re-key the token for a new one).
	Token    string
	File     []byte
	Replayed bool
}

// Issue validates req and stores a new token.
func (o *Ops) Issue(ctx context.Context, req IssueRequest) (Issued, error) {
	l, err := o.List(req.List)
	if err != nil {
		return Issued{}, err
	}
	if err := checkText("owner", req.Owner); err != nil {
		return Issued{}, err
	}
	if err := checkText("external_ref", req.ExternalRef); err != nil {
		return Issued{}, err
	}
	rcpts, err := o.recipients(l, req.Recipients)
	if err != nil {
		return Issued{}, err
	}
	if req.Uses < 0 {
		return Issued{}, fieldErr("uses", "must be at least 1, not %d", req.Uses)
	}
	switch req.Report {
	case "", "none", "summary", "failures":
	default:
		return Issued{}, fieldErr("report", "%q is not one of none, summary, failures", req.Report)
	}
	now := o.now()
	tok, rec, err := policy.NewToken(o.set.Rules, policy.IssueRequest{
		List: l.Addr.String(), Sender: req.Sender, TTL: req.TTL, Uses: req.Uses, Recipients: rcpts, HideSender: req.HideSender,
	}, now)
	if err != nil {
		return Issued{}, fromIssueError(err)
	}
	rec.Owner, rec.ExternalRef, rec.Report = req.Owner, req.ExternalRef, req.Report
	var idem *store.Idempotency
	if req.Idempotency != nil {
		idem = &store.Idempotency{Scope: req.Idempotency.Scope, Key: req.Idempotency.Key, Fingerprint: fingerprint(l, req)}
	}
	stored, replayed, err := o.st.IssueToken(ctx, rec, idem, now)
	if err != nil {
		return Issued{}, err
	}
	if replayed {
		return Issued{Record: stored, Replayed: true}, nil
	}
	return Issued{Record: stored, Token: tok, File: token.FileContent(o.set.Rules.Finder.Prefix, tok)}, nil
}

// fingerprint identifies what req asks for, so that an idempotency key
// reused for another request is noticed.
func fingerprint(l *policy.List, req IssueRequest) [32]byte {
	ttl := "default"
	if req.TTL != nil {
		ttl = req.TTL.String()
	}
	b, _ := json.Marshal([]any{l.Addr.Key(), strings.ToLower(req.Sender), ttl, req.Uses, req.Recipients, req.HideSender, req.Owner, req.ExternalRef, req.Report})
	return sha256.Sum256(b)
}

// fromIssueError maps policy's field names onto the request's.
func fromIssueError(err error) error {
	var ie *policy.IssueError
	if !errors.As(err, &ie) {
		return err
	}
	field := ie.Field
	if field == "recipient" {
		field = "recipients"
	}
	return &FieldError{Field: field, Msg: ie.Msg}
}

// recipients checks the size of a recipient list; policy checks each.
func (o *Ops) recipients(l *policy.List, rcpts []string) ([]string, error) {
	if n, limit := len(rcpts), o.set.maxRecipients(); n > limit {
		return nil, fieldErr("recipients", "names %d addresses; at most %d are allowed (put a larger audience in the list's recipients_file)", n, limit)
	}
	return rcpts, nil
}

// checkText checks an opaque field: UTF-8, no control characters, short.
func checkText(field, s string) error {
	switch {
	case len(s) > MaxTextLength:
		return fieldErr(field, "is longer than %d bytes", MaxTextLength)
	case !utf8.ValidString(s):
		return fieldErr(field, "is not valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fieldErr(field, "contains control characters")
	}
	return nil
}

// Get returns the token id.
func (o *Ops) Get(ctx context.Context, id string) (token.Record, error) {
	return o.st.TokenByID(ctx, id)
}

// All returns every token, oldest first (`token list`).
func (o *Ops) All(ctx context.Context) ([]token.Record, error) { return o.st.Tokens(ctx) }

// State returns r's state now.
func (o *Ops) State(r token.Record) store.TokenState { return store.StateOf(r, o.now()) }

// Revoke revokes the token id (again is fine) and returns its record.
func (o *Ops) Revoke(ctx context.Context, id string) (token.Record, error) {
	if err := o.st.RevokeToken(ctx, id); err != nil {
		return token.Record{}, err
	}
	return o.st.TokenByID(ctx, id)
}

// Rekey gives the token id a new secret; the old one is void at once. A
// token that cannot be used any more (revoked, expired, used up) is not
// re-keyed.
func (o *Ops) Rekey(ctx context.Context, id string) (Issued, error) {
	tok := token.Generate()
	rec, err := o.st.RekeyToken(ctx, id, token.HashOf(tok), o.now())
	if err != nil {
		return Issued{}, err
	}
	return Issued{Record: rec, Token: tok, File: token.FileContent(o.set.Rules.Finder.Prefix, tok)}, nil
}

// SetRecipients replaces the recipients of the token id, checked as when
// issuing; none means the list's own (refused when it has none).
// Deliveries already begun keep the recipients they started with.
func (o *Ops) SetRecipients(ctx context.Context, id string, rcpts []string) (token.Record, error) {
	rec, err := o.st.TokenByID(ctx, id)
	if err != nil {
		return token.Record{}, err
	}
	l, err := o.List(rec.List)
	if err != nil {
		// The list left the configuration: its tokens are refused anyway.
		return token.Record{}, fmt.Errorf("token %s: %w", id, err)
	}
	if _, err := o.recipients(l, rcpts); err != nil {
		return token.Record{}, err
	}
	canon := make([]string, 0, len(rcpts))
	for _, r := range rcpts {
		a, err := address.Parse(r)
		if err != nil {
			return token.Record{}, fieldErr("recipients", "%q: %v", r, err)
		}
		if a.Equal(l.Addr) {
			return token.Record{}, fieldErr("recipients", "%s is the list itself; it would loop", a)
		}
		canon = append(canon, a.String())
	}
	if len(canon) == 0 && len(l.Members) == 0 {
		return token.Record{}, fieldErr("recipients", "is required: %s has no default recipients", l.Addr)
	}
	return o.st.SetTokenRecipients(ctx, id, canon, o.now())
}

// Deliveries returns the deliveries that spent the token id, each with at
// most maxRecipients recipients.
func (o *Ops) Deliveries(ctx context.Context, id string, maxRecipients int) ([]store.DeliveryDetail, error) {
	if _, err := o.st.TokenByID(ctx, id); err != nil {
		return nil, err
	}
	return o.st.TokenDeliveries(ctx, id, maxRecipients)
}

// ParseTTL reads a validity as the configuration writes durations: a Go
// duration ("72h", "30m") or whole days ("7d"); "0" never expires.
func ParseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n >= 0 && n <= 100*365 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write e.g. \"72h\" or \"7d\"; \"0\" never expires)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}
