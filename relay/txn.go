package relay

import (
	"context"
	"io"
	"strings"
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

// pipelineWindow bounds the commands sent before their replies are read.
// The replies of a window must fit the socket buffers: a relay that cannot
// write its replies stops reading our commands, and both would wait.
const pipelineWindow = 100

// transact sends one transaction: MAIL, a RCPT per recipient, DATA. A
// refused recipient does not stop the others (unlike go-smtp's SendMail).
// Every recipient of rcpts gets a final result. When the relay offers
// PIPELINING the commands go out together (up to pipelineWindow at a time)
// and their replies are read in order; otherwise each waits for its reply.
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

	// The commands: MAIL, then the RCPTs, then DATA (the last command of a
	// pipelined group, RFC 2920 section 3.1).
	window := 1
	if k.pipelining {
		window = pipelineWindow
	}
	n := len(send) + 2
	var accepted []int
	for first := 0; first < n; first += window {
		last := min(first+window, n)
		if !k.pipelining && last == n && len(accepted) == 0 {
			// No DATA without a recipient: abandon the transaction.
			o.lost = k.reset(ctx, StageRcpt)
			return o
		}
		for c := first; c < last; c++ {
			k.command(c, from, rcpts, send, utf8)
		}
		if err := k.w.flush(); err != nil {
			// Nothing of this window reached the relay, or nothing it
			// could act on: the recipients without a reply yet fail.
			e := connError(ctx, stageOf(first, n), err)
			o.stage = e.Stage
			fail(accepted, e)
			fail(send[max(first-1, 0):], e)
			o.lost, o.replay = e, true
			return o
		}
		for c := first; c < last; c++ {
			switch {
			case c == 0:
				if _, _, err := k.w.reply(250); err != nil {
					e := connError(ctx, StageMail, err) // always temporary
					fail(send, e)
					if connLost(err) {
						o.lost, o.replay = e, true
						return o
					}
					o.refused = e
					// The replies already on their way say that there is no
					// transaction; read them, and send no more.
					k.drain(ctx, &o, c+1, last, n)
					return o
				}
				o.stage = StageRcpt
			case c < n-1:
				i := send[c-1]
				if _, _, err := k.w.reply(25); err != nil {
					e := connError(ctx, StageRcpt, err)
					o.results[i].Err = e
					if connLost(err) {
						fail(accepted, e)
						fail(send[c:], e)
						o.lost, o.replay = e, true
						return o
					}
					continue
				}
				accepted = append(accepted, i)
			default:
				o.accepted = len(accepted)
				o.stage = StageData
				if !k.data(ctx, &o, accepted, body) {
					return o
				}
			}
		}
	}
	k.txns++
	return o
}

// command buffers command c of a transaction: 0 is MAIL, 1 to len(send)
// the RCPTs, len(send)+1 DATA.
func (k *conn) command(c int, from string, rcpts []string, send []int, utf8 bool) {
	switch {
	case c == 0:
		ext := ""
		if k.eightBit {
			ext = " BODY=8BITMIME"
		}
		if utf8 {
			ext += " SMTPUTF8"
		}
		k.w.line("MAIL FROM:<", from, ">", ext)
	case c <= len(send):
		k.w.line("RCPT TO:<", rcpts[send[c-1]], ">")
	default:
		k.w.line("DATA")
	}
}

// stageOf names the stage of the first command of a window, for a failure
// to send it.
func stageOf(first, n int) string {
	switch {
	case first == 0:
		return StageMail
	case first == n-1:
		return StageData
	}
	return StageRcpt
}

// drain reads the replies to commands from to last-1 of a window whose
// MAIL was refused. A relay that answers DATA with 354 anyway gets an empty
// message (only the final dot). A failure to read loses the connection.
func (k *conn) drain(ctx context.Context, o *outcome, from, last, n int) {
	for c := from; c < last; c++ {
		expect := 25
		if c == n-1 {
			expect = 354
		}
		_, _, err := k.w.reply(expect)
		if err == nil && c == n-1 {
			_, _, err = k.w.cmd(0, ".")
		}
		if err != nil && connLost(err) {
			o.lost = connError(ctx, o.stage, err)
			return
		}
	}
}

// data reads the reply to DATA and, when the relay is ready and some
// recipient was accepted, sends the message and reads the final reply. It
// reports whether the transaction completed.
func (k *conn) data(ctx context.Context, o *outcome, accepted []int, body func() io.Reader) bool {
	fail := func(e *Error) {
		for _, i := range accepted {
			o.results[i].Err = e
		}
	}
	_, _, err := k.w.reply(354)
	switch {
	case err != nil && connLost(err):
		e := connError(ctx, StageData, err)
		fail(e)
		o.lost, o.replay = e, true
		return false
	case err != nil:
		fail(connError(ctx, StageData, err))
		if len(accepted) == 0 {
			o.lost = k.reset(ctx, StageRcpt)
		} else {
			o.lost = k.reset(ctx, StageData)
		}
		return false
	case len(accepted) == 0:
		// Pipelined DATA after every RCPT was refused, and a relay that
		// wants the message anyway: end it at once, empty.
		if _, _, err := k.w.cmd(0, "."); err != nil && connLost(err) {
			o.lost = connError(ctx, StageData, err)
		}
		return false
	}

	src := &errReader{r: body()}
	dw := &dotWriter{w: k.w.w, bol: true}
	if _, err := io.CopyBuffer(dw, src, k.buf); err != nil {
		// The message is cut short. Ending it with the dot would deliver a
		// truncated copy: only dropping the connection aborts it.
		if src.err != nil {
			o.lost = &Error{Temporary: true, Stage: StageData, Message: "reading the message: " + src.err.Error()}
		} else {
			o.lost, o.replay = connError(ctx, StageData, err), true
		}
		fail(o.lost)
		return false
	}
	if err := dw.Close(); err != nil {
		// Perhaps the end of the message reached the relay: the outcome is
		// unknown, as below.
		e := connError(ctx, StageData, err)
		fail(e)
		o.lost = e
		return false
	}
	if _, _, err := k.w.reply(250); err != nil {
		// Without a reply after the final dot the outcome is unknown (RFC
		// 1047): temporary, and not replayed here. A retry may duplicate
		// the copy; any other choice may lose it.
		e := connError(ctx, StageData, err)
		fail(e)
		if connLost(err) {
			o.lost = e
		}
		return false
	}
	return true
}

// reset abandons the transaction with RSET; it returns the error that
// makes the connection unusable, if any.
func (k *conn) reset(ctx context.Context, stage string) *Error {
	if _, _, err := k.w.cmd(250, "RSET"); err != nil {
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
