// Package policy is the one decision about a message for a restricted
// address, shared by the milter, the LMTP endpoint and the dry run. Decide
// is a plain function over Facts — loop, unreadable, throttled, token
// found and valid, address binding, sender binding — returning one
// Verdict; Check adds the token lookup and the guard. The adapters only
// gather facts (the milter step by step, the LMTP endpoint and the dry run
// at once, with the parsers of facts.go) and turn the verdict into a wire
// reply in one place each; none of them decides anything itself.
package policy

import (
	"fmt"
	"log/slog"

	"github.com/restrictedmail/restrictedmail/reply"
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
	Outsiders          // a valid token on a message that also goes to other recipients: they would receive it
	// Undecided: the facts known so far do not decide yet (the milter
	// before the end of the header or the body). Never sent.
	Undecided
)

var reasonNames = [...]string{
	Pass: "pass", NoToken: "no_token", Unknown: "unknown_token", Expired: "expired",
	UsedUp: "used_up", Revoked: "revoked", WrongSender: "wrong_sender", WrongList: "wrong_list",
	Loop: "loop", Malformed: "malformed", TempFail: "tempfail", Throttled: "throttled",
	Outsiders: "outsiders", Undecided: "undecided",
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
	// Tripped: this verdict's unknown token made the guard block the
	// client or sender (for the adapter's log line).
	Tripped bool
}

// OK reports whether the message may pass.
func (v Verdict) OK() bool { return v.Reason == Pass }

// Final reports whether the verdict stands whatever is learnt later.
func (v Verdict) Final() bool { return v.Reason != Undecided }

// Temporary reports whether the sender should try again later.
func (v Verdict) Temporary() bool { return v.Reason == TempFail || v.Reason == Throttled }

// Reply returns the SMTP reply for the verdict. Rejections are 550 5.7.1
// (RFC 3463: delivery not authorized) with a sentence that tells the sender
// what is wrong and names the restricted address.
func (v Verdict) Reply() reply.Reply {
	switch v.Reason {
	case Pass:
		return reply.OK()
	case NoToken:
		return reply.NoToken(v.List)
	case Unknown:
		return reply.UnknownToken(v.List)
	case Expired:
		return reply.ExpiredToken(v.List)
	case UsedUp:
		return reply.UsedUpToken(v.List)
	case Revoked:
		return reply.RevokedToken(v.List)
	case WrongSender:
		return reply.WrongSender(v.List)
	case WrongList:
		return reply.WrongList(v.List)
	case Loop:
		return reply.Loop(v.List)
	case Malformed:
		return reply.Malformed(v.List)
	case Throttled:
		return reply.Throttled(v.List)
	case Outsiders:
		return reply.Outsiders(v.List)
	}
	// TempFail, and Undecided should an adapter ever send it: never a pass.
	return reply.TokenTempFail()
}

// LogValue logs the reason and list, and the cause of a failure.
func (v Verdict) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("reason", v.Reason.String()), slog.String("list", v.List)}
	if v.Cause != nil {
		attrs = append(attrs, slog.String("cause", v.Cause.Error()))
	}
	return slog.GroupValue(attrs...)
}
