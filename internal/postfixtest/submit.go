package postfixtest

import (
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/emersion/go-smtp"
)

// SubmitResult is what each step of an SMTP transaction answered.
type SubmitResult struct {
	// Mail is the reply to MAIL FROM (*smtp.SMTPError), or the failure to
	// connect, greet or EHLO; when it is set, nothing else was sent.
	Mail error
	// Rcpt holds the reply to RCPT TO for each recipient (nil = accepted).
	Rcpt map[string]error
	// Data is the reply to DATA or, after the message, the final reply:
	// nil means accepted (queued). DATA is sent even when every recipient
	// was refused, so that tests see Postfix's own answer to that.
	Data error
	// QueueID is Postfix's queue ID from "250 2.0.0 Ok: queued as ID".
	QueueID string
}

// submitDialTimeout bounds connecting; the SMTP replies themselves get
// go-smtp's RFC 5321 timeouts, which outlast Postfix's milter timeouts.
const submitDialTimeout = 10 * time.Second

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// Submit sends data from one sender to rcpts over plain SMTP (no TLS, no
// AUTH) and reports each reply, so that a test can assert per-recipient
// rejections and the final answer exactly. Line endings in data may be LF
// or CRLF.
func Submit(addr, from string, rcpts []string, data []byte) SubmitResult {
	res := SubmitResult{Rcpt: make(map[string]error, len(rcpts))}
	conn, err := net.DialTimeout("tcp", addr, submitDialTimeout)
	if err != nil {
		res.Mail = fmt.Errorf("connecting to %s: %w", addr, err)
		return res
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.postfixtest.test"); err != nil {
		res.Mail = fmt.Errorf("greeting or EHLO: %w", err)
		return res
	}
	if err := c.Mail(from, nil); err != nil {
		res.Mail = err
		return res
	}
	for _, rcpt := range rcpts {
		res.Rcpt[rcpt] = c.Rcpt(rcpt, nil)
	}
	w, err := c.Data()
	if err != nil {
		res.Data = err
		c.Quit()
		return res
	}
	if _, err := w.Write(data); err != nil {
		res.Data = fmt.Errorf("writing message: %w", err)
		return res
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		res.Data = err
		c.Quit()
		return res
	}
	if m := queuedAs.FindStringSubmatch(resp.StatusText); m != nil {
		res.QueueID = m[1]
	}
	c.Quit()
	return res
}
