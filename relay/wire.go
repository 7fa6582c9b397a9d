package relay

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// wire speaks SMTP on one relay connection. Commands go through a write
// buffer and are flushed when a reply is needed, so that the commands of a
// transaction leave in one write when the relay offers PIPELINING (RFC
// 2920), and a message in a few large writes. Every read and every write
// has its own deadline (RFC 5321 section 4.5.3.2 times each step, not the
// whole conversation).
//
// go-smtp's client does none of this: it waits for each reply in turn,
// writes messages in 4 KiB pieces and allocates 2 KiB per command, which
// made the client the largest cost of a fan-out.
type wire struct {
	conn    net.Conn // the TLS connection once TLS is up
	r       *textproto.Reader
	w       *bufio.Writer
	timeout time.Duration
	ext     map[string]string // EHLO keywords, upper case, with their parameters
}

// writeBuffer holds a transaction's commands and large slices of its message.
const writeBuffer = 64 << 10

func newWire(c net.Conn, timeout time.Duration) *wire {
	w := &wire{conn: c, timeout: timeout, r: textproto.NewReader(bufio.NewReader(c))}
	w.w = bufio.NewWriterSize(deadlineWriter{w}, writeBuffer)
	return w
}

// deadlineWriter gives every write to the connection a fresh deadline: a
// relay that stops reading fails the transfer after the command timeout,
// however long the whole message takes.
type deadlineWriter struct{ w *wire }

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.w.conn.SetWriteDeadline(time.Now().Add(d.w.timeout))
	return d.w.conn.Write(p)
}

// line buffers one command line; lines are checked for CR and LF by the
// callers, which report them as refusals of their own.
func (w *wire) line(parts ...string) {
	for _, p := range parts {
		w.w.WriteString(p)
	}
	w.w.WriteString("\r\n")
}

// flush sends the buffered commands.
func (w *wire) flush() error { return w.w.Flush() }

// reply reads one reply. A reply whose code does not begin with expect (0:
// any) is returned as an *smtp.SMTPError, as go-smtp's client would; a
// timeout, a closed connection or a garbled reply as the error it is.
func (w *wire) reply(expect int) (code int, msg string, err error) {
	w.conn.SetReadDeadline(time.Now().Add(w.timeout))
	code, msg, err = w.r.ReadResponse(expect)
	var te *textproto.Error
	if errors.As(err, &te) {
		return code, msg, toSMTPError(te)
	}
	return code, msg, err
}

// cmd sends one command and reads its reply.
func (w *wire) cmd(expect int, parts ...string) (int, string, error) {
	w.line(parts...)
	if err := w.flush(); err != nil {
		return 0, "", err
	}
	return w.reply(expect)
}

// toSMTPError is go-smtp's reading of a reply: an RFC 3463 code at the
// start of the text becomes EnhancedCode, and is removed from each line.
func toSMTPError(te *textproto.Error) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	first, rest, ok := strings.Cut(te.Msg, " ")
	if !ok {
		return e
	}
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return e
	}
	var enh smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return e
		}
		enh[i] = n
	}
	e.EnhancedCode, e.Message = enh, strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return e
}

// greet reads the greeting, then says EHLO as name.
func (w *wire) greet(name string) error {
	if _, _, err := w.reply(220); err != nil {
		return err
	}
	return w.hello(name)
}

// hello says EHLO as name (HELO to a server that does not know EHLO), after
// the greeting or after STARTTLS, and records the extensions offered.
func (w *wire) hello(name string) error {
	w.ext = map[string]string{}
	_, msg, err := w.cmd(250, "EHLO ", name)
	var se *smtp.SMTPError
	if errors.As(err, &se) && (se.Code == 500 || se.Code == 502) {
		_, _, err = w.cmd(250, "HELO ", name)
		return err
	}
	if err != nil {
		return err
	}
	for _, l := range strings.Split(msg, "\n")[1:] {
		k, v, _ := strings.Cut(l, " ")
		w.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// has reports whether the relay offers an extension.
func (w *wire) has(ext string) bool {
	_, ok := w.ext[ext]
	return ok
}

// supportsAuth reports whether the relay offers SASL mechanism mech.
func (w *wire) supportsAuth(mech string) bool {
	for _, m := range strings.Fields(w.ext["AUTH"]) {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// auth runs a SASL exchange (RFC 4954). A refusal is an *smtp.SMTPError.
func (w *wire) auth(a sasl.Client) error {
	mech, resp, err := a.Start()
	if err != nil {
		return err
	}
	cmd := "AUTH " + mech
	switch {
	case len(resp) > 0:
		cmd += " " + base64.StdEncoding.EncodeToString(resp)
	case resp != nil:
		cmd += " =" // an empty initial response
	}
	code, msg, err := w.cmd(0, cmd)
	for {
		if err != nil {
			return err
		}
		switch code {
		case 235:
			return nil
		case 334:
		default:
			return toSMTPError(&textproto.Error{Code: code, Msg: msg})
		}
		challenge, cerr := base64.StdEncoding.DecodeString(msg)
		if cerr == nil {
			resp, cerr = a.Next(challenge)
		}
		if cerr != nil {
			// A challenge we cannot answer: cancel the exchange (RFC 4954
			// section 4) and say why.
			w.cmd(0, "*")
			return fmt.Errorf("AUTH %s: %w", mech, cerr)
		}
		// Assigned to the loop's err, not a shadow: a connection lost while
		// sending the response must end the exchange with its own error.
		code, msg, err = w.cmd(0, base64.StdEncoding.EncodeToString(resp))
	}
}

// dotWriter writes a message as DATA carries it (RFC 5321 section 4.5.2):
// a dot that starts a line is doubled, a bare LF becomes CRLF, and Close
// ends the message with a line holding a single dot. It copies runs of
// bytes between line ends, where textproto's writer goes byte by byte.
type dotWriter struct {
	w     *bufio.Writer
	bol   bool // at the beginning of a line
	cr    bool // the last byte written was CR
	begun bool // something was written
}

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	d.begun = d.begun || n > 0
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			d.w.WriteByte('.')
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.w.Write(p)
			d.bol, d.cr = false, p[len(p)-1] == '\r'
			break
		}
		d.w.Write(p[:i])
		if !(i > 0 && p[i-1] == '\r' || i == 0 && d.cr) {
			d.w.WriteByte('\r')
		}
		d.w.WriteByte('\n')
		d.bol, d.cr = true, false
		p = p[i+1:]
	}
	// bufio.Writer keeps the first write error and returns it from then on.
	if _, err := d.w.Write(nil); err != nil {
		return 0, err
	}
	return n, nil
}

// Close ends the message and sends what is buffered. Like textproto's
// writer, it completes a last line without its end, and ends an empty
// message after an empty line.
func (d *dotWriter) Close() error {
	switch {
	case d.cr:
		d.w.WriteByte('\n')
	case !d.bol || !d.begun:
		d.w.WriteString("\r\n")
	}
	d.w.WriteString(".\r\n")
	return d.w.Flush()
}
