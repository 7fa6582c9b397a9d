package relay

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// outcome is what one transaction did.
type outcome struct {
	results  []Result
	stage    string // the last stage reached, for the log
	accepted int    // recipients the relay accepted at RCPT
	refused  *Error // MAIL FROM was refused: a configuration problem
	lost     *Error // why the connection is unusable; nil if it is fine
	// replay: the connection was lost before the end of the message was
	// sent, so the relay cannot have delivered anything of this
	// transaction and sending it again on a new connection is safe.
	replay bool
}

// localRefusal is a recipient refused by us, shaped like the permanent
// reply a relay would give. Fresh each time: results are the caller's.
func localRefusal(code int, enhanced [3]int, msg string) *Error {
	return &Error{Code: code, Enhanced: enhanced, Stage: StageRcpt, Message: msg}
}

// transact sends one transaction: MAIL, a RCPT per recipient, DATA. A
// refused recipient does not stop the others (unlike go-smtp's SendMail).
// Every recipient of rcpts gets a final result.
func (k *conn) transact(ctx context.Context, from string, rcpts []string, body func() io.Reader) (o outcome) {
	o.results = make([]Result, len(rcpts))
	for i, r := range rcpts {
		o.results[i].Rcpt = r
	}
	fail := func(idx []int, e *Error) {
		for _, i := range idx {
			o.results[i].Err = e
		}
	}

	// RFC 6531: a non-ASCII address needs SMTPUTF8 in MAIL, which needs the
	// extension. Without it those recipients fail for good, the rest go on.
	utf8 := !isASCII(from)
	var send []int
	for i, r := range rcpts {
		switch {
		case strings.ContainsAny(r, "\r\n"):
			o.results[i].Err = localRefusal(501, [3]int{5, 1, 3}, "address contains a line break")
		case isASCII(r):
			send = append(send, i)
		case k.utf8:
			utf8 = true
			send = append(send, i)
		default:
			o.results[i].Err = localRefusal(553, [3]int{5, 6, 7}, "non-ASCII address, and the relay does not offer SMTPUTF8")
		}
	}
	if len(send) == 0 {
		return o
	}

	o.stage = StageMail
	switch {
	case strings.ContainsAny(from, "\r\n"):
		o.refused = &Error{Temporary: true, Stage: StageMail, Message: "the envelope sender contains a line break"}
	case utf8 && !k.utf8:
		o.refused = &Error{Temporary: true, Stage: StageMail,
			Message: "the envelope sender is not ASCII, and the relay does not offer SMTPUTF8"}
	}
	if o.refused != nil {
		fail(send, o.refused)
		return o
	}
	if err := k.c.Mail(from, &smtp.MailOptions{UTF8: utf8}); err != nil {
		e := connError(ctx, StageMail, err) // always temporary
		fail(send, e)
		if connLost(err) {
			o.lost, o.replay = e, true
		} else {
			o.refused = e
		}
		return o
	}

	o.stage = StageRcpt
	var accepted []int
	for n, i := range send {
		err := k.c.Rcpt(rcpts[i], nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		e := connError(ctx, StageRcpt, err)
		o.results[i].Err = e
		if connLost(err) {
			fail(accepted, e)
			fail(send[n+1:], e)
			o.lost, o.replay = e, true
			return o
		}
	}
	o.accepted = len(accepted)
	if len(accepted) == 0 {
		// No DATA without a recipient: abandon the transaction.
		o.lost = k.reset(ctx, StageRcpt)
		return o
	}

	o.stage = StageData
	w, err := k.c.Data()
	if err != nil {
		e := connError(ctx, StageData, err)
		fail(accepted, e)
		if connLost(err) {
			o.lost, o.replay = e, true
		} else {
			o.lost = k.reset(ctx, StageData)
		}
		return o
	}
	src := &errReader{r: body()}
	if _, err := io.Copy(deadlineWriter{k, w}, src); err != nil {
		// The message is cut short. Ending it with the dot would deliver a
		// truncated copy: only dropping the connection aborts it.
		if src.err != nil {
			o.lost = &Error{Temporary: true, Stage: StageData, Message: "reading the message: " + src.err.Error()}
		} else {
			o.lost, o.replay = connError(ctx, StageData, err), true
		}
		fail(accepted, o.lost)
		return o
	}
	k.raw.SetWriteDeadline(time.Now().Add(k.timeout)) // Close flushes the end
	if err := w.Close(); err != nil {
		// Without a reply after the final dot the outcome is unknown (RFC
		// 1047): temporary, and not replayed here. A retry may duplicate
		// the copy; any other choice may lose it.
		e := connError(ctx, StageData, err)
		fail(accepted, e)
		if connLost(err) {
			o.lost = e
		}
		return o
	}
	k.txns++
	return o
}

// reset abandons the transaction with RSET; it returns the error that
// makes the connection unusable, if any.
func (k *conn) reset(ctx context.Context, stage string) *Error {
	if err := k.c.Reset(); err != nil {
		return connError(ctx, stage, err)
	}
	return nil
}

// errReader remembers the error of the message source, so that a failure
// to read the message is not mistaken for a network failure.
type errReader struct {
	r   io.Reader
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
