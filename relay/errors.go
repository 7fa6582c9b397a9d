package relay

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/emersion/go-smtp"
)

// Stages of a relay conversation, for Error.Stage.
const (
	StageConnect = "connect" // TCP connect, or the connection was never tried
	StageTLS     = "tls"     // STARTTLS negotiation or TLS handshake
	StageHelo    = "helo"    // greeting and EHLO
	StageAuth    = "auth"
	StageMail    = "mail"
	StageRcpt    = "rcpt"
	StageData    = "data" // DATA command, message transfer and final reply
)

// Error is a relay failure, for retry decisions and logs.
type Error struct {
	Temporary bool   // retry later
	Code      int    // SMTP reply code; 0 when there was no reply (network, TLS)
	Enhanced  [3]int // RFC 3463 code; zero when the server gave none
	Stage     string // "connect", "tls", "helo", "auth", "mail", "rcpt", "data"
	Message   string // the server's reply text, or the local error
}

func (e *Error) Error() string {
	kind := "temporary"
	if !e.Temporary {
		kind = "permanent"
	}
	reply := ""
	if e.Code != 0 {
		reply = fmt.Sprintf("%d ", e.Code)
		if e.Enhanced != [3]int{} {
			reply += fmt.Sprintf("%d.%d.%d ", e.Enhanced[0], e.Enhanced[1], e.Enhanced[2])
		}
	}
	return fmt.Sprintf("relay %s: %s%s (%s)", e.Stage, reply, e.Message, kind)
}

// replyError turns what the relay connection (wire) returned at stage into
// an Error; replies come as *smtp.SMTPError.
//
// Only a 5xx reply to RCPT or to DATA is permanent: it is the relay's
// verdict on a recipient or a message. Everything else is temporary, 5xx
// included: a refused greeting, EHLO, AUTH or MAIL FROM says that the relay
// or our configuration of it is wrong (a password, a bounce address the
// relay will not send as), and failing every recipient for good would lose
// the mail when the administrator fixes it. Postfix retries until its
// give-up age.
func replyError(stage string, err error) *Error {
	e := &Error{Temporary: true, Stage: stage, Message: err.Error()}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		e.Code, e.Message = se.Code, se.Message
		if se.EnhancedCode != smtp.NoEnhancedCode {
			e.Enhanced = [3]int(se.EnhancedCode)
		}
		e.Temporary = se.Code/100 != 5 || (stage != StageRcpt && stage != StageData)
	}
	return e
}

// connError is replyError that names a cancelled context or a timeout as
// the cause of a failure without a reply: cancellation closes the
// connection under the reader's feet, and "use of closed network connection"
// would hide why.
func connError(ctx context.Context, stage string, err error) *Error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return replyError(stage, err)
	}
	if ctx.Err() != nil {
		return &Error{Temporary: true, Stage: stage, Message: "cancelled: " + context.Cause(ctx).Error()}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Temporary: true, Stage: stage, Message: "timeout: " + err.Error()}
	}
	return replyError(stage, err)
}

// connLost reports whether err leaves the connection unusable: anything but
// an SMTP reply (network, timeout, garbled reply), or a 421 reply, with
// which the server announces that it closes the connection (RFC 5321
// section 3.8).
func connLost(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code == 421
	}
	return true
}
