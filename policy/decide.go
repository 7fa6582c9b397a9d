package policy

import (
	"context"
	"errors"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/token"
)

// Facts are what is known of a message when it is judged for one
// restricted address. The milter learns them step by step (RCPT, end of
// header, end of message) and says how far it got with HeaderRead and
// BodyRead; the LMTP endpoint and the dry run know them all at once.
type Facts struct {
	List *List // the restricted address

	// HeaderRead: Loop, Unreadable, HeaderFrom and a header token are
	// known. BodyRead: the body was searched for a token part (or cannot
	// hold one). Until then a missing token or sender match may still
	// turn up, and the verdict is Undecided.
	HeaderRead bool
	BodyRead   bool

	Loop       bool // the message carries this list's loop marker
	Unreadable bool // the header could not be read (malformed or too large)
	Throttled  bool // the guard blocks the client or the sender (for unknown tokens only)
	// Outsiders: the message also goes to recipients outside the
	// restricted addresses. Only the milter sees every recipient; the LMTP
	// endpoint is handed the restricted ones alone.
	Outsiders bool

	EnvelopeSender address.Address   // zero for the null sender (or an unparsable one)
	HeaderFrom     []address.Address // addresses of the From field
	Token          string            // "" when no carrier held one so far
	// MessageID is the message's Message-ID as a key (MessageIDKey), ""
	// without one: with the list and the token it recognises the same
	// message arriving through another MX host with other bytes.
	MessageID string
	// Duplicate: the journal holds a delivery of this message (list,
	// token, MessageID) that spent the token — the message arriving again
	// through another MX host after the upstream lost that host's 250. It
	// was accepted once and is distributed once, so the token's uses,
	// expiry and revocation since do not refuse it again.
	Duplicate bool

	// Record is the token's record, nil when the token is unknown (or not
	// looked up yet); Err is an internal failure on the way (the store, a
	// spool file), which is a TempFail, never a pass.
	Record *token.Record
	Err    error

	Now time.Time
}

// Decide is the decision: a plain function of the facts. It checks, it
// does not spend.
func Decide(f Facts) Verdict {
	v := Verdict{List: f.List.Addr.String()}
	switch {
	case f.HeaderRead && f.Loop:
		v.Reason = Loop
	case f.HeaderRead && f.Unreadable:
		v.Reason = Malformed
	case f.Token == "" && f.Err == nil && !f.BodyRead:
		v.Reason = Undecided
	case f.Token == "" && f.Err == nil:
		v.Reason = NoToken
	case f.Err != nil:
		v.Reason, v.Cause = TempFail, f.Err
	case f.Record == nil && f.Throttled:
		// The guard holds back unknown tokens only: a valid token is never
		// refused because somebody else guessed from the same client or
		// with a forged sender.
		v.Reason = Throttled
	case f.Record == nil:
		v.Reason = Unknown
	case f.Record.List != f.List.Addr.Key():
		v.Reason = WrongList
	case f.Record.Revoked && !f.Duplicate:
		v.Reason = Revoked
	case f.Record.Expired(f.Now) && !f.Duplicate:
		v.Reason = Expired
	case f.Record.UsesLeft() == 0 && !f.Duplicate:
		v.Reason = UsedUp
	case !senderMatches(f.Record.Sender, f) && !f.HeaderRead:
		// The From field may still match the binding.
		v.Reason = Undecided
	case !senderMatches(f.Record.Sender, f):
		v.Reason = WrongSender
	case f.Outsiders:
		v.Reason = Outsiders
	default:
		v.Reason = Pass
	}
	return v
}

// senderMatches applies SPEC.md's sender binding: the envelope sender or
// an address of the From field equals the bound sender, ignoring case.
// Forwarders (Google Workspace, for one) rewrite the envelope sender, which
// is why the From field counts too.
func senderMatches(bound string, f Facts) bool {
	if bound == "" {
		return true
	}
	if !f.EnvelopeSender.IsZero() && f.EnvelopeSender.Key() == bound {
		return true
	}
	for _, a := range f.HeaderFrom {
		if a.Key() == bound {
			return true
		}
	}
	return false
}

// Tokens is what Check needs from a store.
type Tokens interface {
	TokenByHash(ctx context.Context, h token.Hash) (token.Record, error)
}

// Guard slows token guessing (*guard.Guard satisfies it).
type Guard interface {
	Blocked(now time.Time, keys ...string) bool
	Fail(now time.Time, keys ...string) (blockedNow bool)
}

// Journal is what Check needs to recognise a duplicate: whether a
// delivery of the message with messageID spent tokenID for list (list in
// address.Key form).
type Journal interface {
	MessageSpent(ctx context.Context, list, tokenID, messageID string) (bool, error)
}

// Checker adds what Decide cannot know by itself: the token's record,
// whether the guard blocks the message's client or sender, and whether
// the message is a duplicate of one the token was spent for.
type Checker struct {
	Tokens  Tokens  // nil: every lookup is a TempFail
	Guard   Guard   // nil: no limit
	Journal Journal // nil: no duplicate is recognised
}

var errNoStore = errors.New("no token store configured")

// Check completes f — the token's record, then, for an unknown token
// only, the guard — and decides. An unknown token is counted against
// guardKeys; while one of them is blocked, unknown tokens get Throttled
// (450, try later) instead of Unknown. A valid token is never held back by
// the guard: the guard is no lever against the owner of a forged sender
// or the users of a shared upstream. On Pass the facts it returns hold the
// record.
func (c Checker) Check(ctx context.Context, f Facts, guardKeys ...string) (Facts, Verdict) {
	looked := false
	if f.Token != "" && f.Record == nil && f.Err == nil && !f.Throttled {
		looked = true
		if c.Tokens == nil {
			f.Err = errNoStore
		} else {
			rec, err := c.Tokens.TokenByHash(ctx, token.HashOf(f.Token))
			switch {
			case errors.Is(err, token.ErrNotFound):
			case err != nil:
				f.Err = err
			default:
				f.Record = &rec
			}
		}
	}
	// Asked once the header is read (a subaddress token's record is known
	// at RCPT already, its Message-ID not yet: the milter refuses a used
	// one there, as before).
	if f.Record != nil && f.MessageID != "" && !f.Duplicate && f.Err == nil && c.Journal != nil && !usable(f) {
		spent, err := c.Journal.MessageSpent(ctx, f.List.Addr.Key(), f.Record.ID, f.MessageID)
		if err != nil {
			f.Err = err
		}
		f.Duplicate = spent
	}
	guarded := c.Guard != nil && len(guardKeys) > 0
	if looked && f.Record == nil && f.Err == nil && guarded {
		f.Throttled = c.Guard.Blocked(f.Now, guardKeys...)
	}
	v := Decide(f)
	if looked && (v.Reason == Unknown || v.Reason == Throttled) && guarded {
		v.Tripped = c.Guard.Fail(f.Now, guardKeys...)
	}
	return f, v
}

// usable reports whether f's token still allows a message: only a token
// that does not is worth asking the journal about.
func usable(f Facts) bool {
	return !f.Record.Revoked && !f.Record.Expired(f.Now) && f.Record.UsesLeft() > 0
}

// FromSpendError turns a store's refusal to spend into a verdict for list;
// an error that is not one of token's refusals is a TempFail.
func FromSpendError(list string, err error) Verdict {
	v := Verdict{List: list}
	switch {
	case err == nil:
		v.Reason = Pass
	case errors.Is(err, token.ErrUsedUp):
		v.Reason = UsedUp
	case errors.Is(err, token.ErrRevoked):
		v.Reason = Revoked
	case errors.Is(err, token.ErrExpired):
		v.Reason = Expired
	case errors.Is(err, token.ErrNotFound):
		v.Reason = Unknown
	default:
		v.Reason, v.Cause = TempFail, err
	}
	return v
}
