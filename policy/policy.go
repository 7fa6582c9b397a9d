// Package policy is the one decision that the milter and the LMTP endpoint
// share: given the facts of a message for one restricted address, may it
// pass? Judge is a plain function, testable without sockets or a store;
// Check adds the token lookup. A Verdict carries its SMTP reply so that
// each adapter turns it into a wire answer in exactly one place, and no
// internal error text ever reaches the wire.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/token"
)

// Reason says why a message was or was not let through.
type Reason int

// The reasons of SPEC.md, plus the operational ones.
const (
	Pass        Reason = iota
	NoToken            // no carrier held a token
	Unknown            // no such token
	Expired            // past its expiry time
	UsedUp             // every use spent
	Revoked            // revoked by an administrator
	WrongSender        // bound to another sender
	WrongList          // issued for another restricted address
	Loop               // carries this list's loop marker
	Malformed          // the message could not be read as mail
	TempFail           // store or internal failure: try again later
	Throttled          // too many unknown tokens from this client or sender (guard)
)

var reasonNames = [...]string{
	Pass: "pass", NoToken: "no_token", Unknown: "unknown_token", Expired: "expired",
	UsedUp: "used_up", Revoked: "revoked", WrongSender: "wrong_sender", WrongList: "wrong_list",
	Loop: "loop", Malformed: "malformed", TempFail: "tempfail", Throttled: "throttled",
}

// String is the stable name used in logs and metrics.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Verdict is the outcome for one restricted address.
type Verdict struct {
	Reason Reason
	List   string // the restricted address judged
	// Cause is the internal error behind a TempFail; it is logged, never
	// sent to the SMTP client.
	Cause error
}

// OK reports whether the message may pass.
func (v Verdict) OK() bool { return v.Reason == Pass }

// Temporary reports whether the sender should try again later.
func (v Verdict) Temporary() bool { return v.Reason == TempFail || v.Reason == Throttled }

// Reply is an SMTP reply: code, enhanced status code (RFC 3463) and text.
type Reply struct {
	Code     int
	Enhanced [3]int
	Text     string
}

func (r Reply) String() string {
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text)
}

// Reply returns the SMTP reply for the verdict. Rejections are 550 5.7.1
// (RFC 3463: delivery not authorized) with a sentence that tells the sender
// what is wrong and names the restricted address.
func (v Verdict) Reply() Reply {
	addr := "<" + v.List + ">"
	switch v.Reason {
	case Pass:
		return Reply{250, [3]int{2, 0, 0}, "OK"}
	case NoToken:
		return Reply{550, [3]int{5, 7, 1}, "No posting token found: " + addr + " is a restricted address; attach your token file, add the token header, or write to the address with the token you were given"}
	case Unknown:
		return Reply{550, [3]int{5, 7, 1}, "Unknown posting token: this message's token is not valid for " + addr}
	case Expired:
		return Reply{550, [3]int{5, 7, 1}, "Posting token expired: ask for a new token to write to " + addr}
	case UsedUp:
		return Reply{550, [3]int{5, 7, 1}, "Posting token already used: it allowed no more messages to " + addr}
	case Revoked:
		return Reply{550, [3]int{5, 7, 1}, "Posting token revoked: it no longer allows messages to " + addr}
	case WrongSender:
		return Reply{550, [3]int{5, 7, 1}, "Posting token not valid for this sender: it was issued to another sender for " + addr}
	case WrongList:
		return Reply{550, [3]int{5, 7, 1}, "Posting token not valid for this address: it was issued for another address than " + addr}
	case Loop:
		// RFC 3463 X.4.6: routing loop detected.
		return Reply{554, [3]int{5, 4, 6}, "Mail loop detected: this message was already distributed by " + addr}
	case Malformed:
		// Like every rejection, name the address when there is one: the
		// sender may have written to several.
		text := "Message could not be read: its header is malformed or too large"
		if v.List != "" {
			text = "Message to " + addr + " could not be read: its header is malformed or too large"
		}
		return Reply{554, [3]int{5, 6, 0}, text}
	case Throttled:
		// RFC 3463 X.7.1: not authorized; 4xx because the block ends.
		return Reply{450, [3]int{4, 7, 1}, "Too many invalid posting tokens for " + addr + " from this client or sender; try again later"}
	}
	return Reply{451, [3]int{4, 3, 0}, "Temporary failure checking the posting token, please try again later"}
}

// LogValue logs the reason and list, and the cause of a failure.
func (v Verdict) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("reason", v.Reason.String()), slog.String("list", v.List)}
	if v.Cause != nil {
		attrs = append(attrs, slog.String("cause", v.Cause.Error()))
	}
	return slog.GroupValue(attrs...)
}

// Facts are what is known of a message when it is judged for one restricted
// address.
type Facts struct {
	List           address.Address   // the restricted address
	EnvelopeSender address.Address   // zero for the null sender
	HeaderFrom     []address.Address // addresses of the From field
	Token          string            // "" when no carrier held one
	Now            time.Time
}

// Judge decides from the facts and the token's record (nil when the token
// is unknown). It checks, it does not spend.
func Judge(f Facts, rec *token.Record) Verdict {
	v := Verdict{List: f.List.String()}
	switch {
	case f.Token == "":
		v.Reason = NoToken
	case rec == nil:
		v.Reason = Unknown
	case rec.List != f.List.Key():
		v.Reason = WrongList
	case rec.Revoked:
		v.Reason = Revoked
	case rec.Expired(f.Now):
		v.Reason = Expired
	case rec.UsesLeft() == 0:
		v.Reason = UsedUp
	case !senderMatches(rec.Sender, f):
		v.Reason = WrongSender
	default:
		v.Reason = Pass
	}
	return v
}

// senderMatches applies SPEC.md's sender binding: the envelope sender or
// an address of the From field equals the bound sender, ignoring case.
// Forwarders (Google Groups, for one) rewrite the envelope sender, which
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

// Check looks the token up and judges. A store failure is a TempFail
// verdict, never a pass. On Pass the token's record is returned too.
func Check(ctx context.Context, store Tokens, f Facts) (Verdict, *token.Record) {
	if f.Token == "" {
		return Judge(f, nil), nil
	}
	rec, err := store.TokenByHash(ctx, token.HashOf(f.Token))
	switch {
	case errors.Is(err, token.ErrNotFound):
		return Judge(f, nil), nil
	case err != nil:
		return Verdict{Reason: TempFail, List: f.List.String(), Cause: err}, nil
	}
	v := Judge(f, &rec)
	if !v.OK() {
		return v, nil
	}
	return v, &rec
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

// LoopHeader is the loop marker the rewriter adds to every copy: its value
// is the list address. A message that already carries this list's marker
// came back to us (a recipient forwarding to the list, say) and is not
// distributed again.
const LoopHeader = "X-Loop"

// IsLoop reports whether one of the LoopHeader values names list.
func IsLoop(values []string, list address.Address) bool {
	for _, v := range values {
		if a, err := address.Parse(v); err == nil && a.Equal(list) {
			return true
		}
	}
	return false
}
