//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/token"
)

// tokenMessage is a multipart message of about size bytes to rcpt: a text
// part of filler lines, then the token file as a base64 attachment, last,
// so that the milter has to read the whole body to find it. id makes the
// message unique (the LMTP endpoint recognises a message handed over twice).
func tokenMessage(size int, rcpt, tok, id string) []byte {
	var b bytes.Buffer
	b.Grow(size + 1024)
	fmt.Fprintf(&b, "From: Alice <%s>\r\nTo: %s\r\nSubject: Benchmark mailing %s\r\n", author, rcpt, id)
	fmt.Fprintf(&b, "Message-ID: <%s@example.net>\r\nDate: %s\r\nMIME-Version: 1.0\r\n", id, time.Now().Format(time.RFC1123Z))
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n")
	b.WriteString("--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello board, the minutes follow.\r\n")
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\r\n"
	for b.Len() < size-400 {
		b.WriteString(line)
	}
	b.WriteString("--b1\r\nContent-Type: text/plain; name=\"token.txt\"\r\nContent-Disposition: attachment; filename=\"token.txt\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	b.WriteString(base64.StdEncoding.EncodeToString(token.FileContent(prefix, tok)) + "\r\n--b1--\r\n")
	return b.Bytes()
}

// lmtpSend plays Postfix's LMTP client: one message from author to rcpt.
// It returns the error of the transaction or of the recipient's reply.
func lmtpSend(addr, rcpt string, msg []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	// A 100,000-recipient fan-out runs for a while before the reply.
	c.SubmissionTimeout = 10 * time.Minute
	if err := c.Hello("mx.bench.test"); err != nil {
		return err
	}
	if err := c.Mail(author, nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		return err
	}
	return c.Quit()
}

// milterConn is one go-milter client session standing in for Postfix.
type milterConn struct {
	s *gomilter.ClientSession
}

func dialMilter(addr string) (*milterConn, error) {
	// Generous timeouts: a 50 MB body is written to a milter that scans it.
	s, err := gomilter.NewClient("tcp", addr,
		gomilter.WithReadTimeout(2*time.Minute), gomilter.WithWriteTimeout(2*time.Minute)).Session(nil)
	if err != nil {
		return nil, err
	}
	// Always called, even when negotiated away (the client skips them).
	if _, err := s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.1"); err != nil {
		return nil, err
	}
	if _, err := s.Helo("client.example.net"); err != nil {
		return nil, err
	}
	return &milterConn{s: s}, nil
}

func (m *milterConn) Close() { m.s.Close() }

// bodyChunk is the body size of one milter packet: the largest the protocol allows (go-milter's DataSize64K), as Postfix sends them.
const bodyChunk = 65535

// send plays one message to rcpt through the milter and returns the final
// action and how long the milter took from end of message to its verdict.
// A verdict before the end of the message (a reject at RCPT, an accept at
// DATA) is returned with a zero duration.
func (m *milterConn) send(rcpt string, msg []byte) (*gomilter.Action, time.Duration, error) {
	s := m.s
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Mail(author, "") },
		func() (*gomilter.Action, error) { return s.Rcpt(rcpt, "") },
		s.DataStart,
	} {
		act, err := step()
		if err != nil {
			return nil, 0, err
		}
		if act.StopProcessing() {
			return act, 0, nil
		}
	}
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, 0, errors.New("message has no end of header")
	}
	body := msg[end+4:]
	h, err := mailheader.Read(bufio.NewReader(bytes.NewReader(msg[:end+4])))
	if err != nil {
		return nil, 0, err
	}
	for f := h.Fields(); f.Next(); {
		act, err := s.HeaderField(f.Key(), f.Value(), nil)
		if err != nil {
			return nil, 0, err
		}
		if act.StopProcessing() {
			return act, 0, nil
		}
	}
	act, err := s.HeaderEnd()
	if err != nil {
		return nil, 0, err
	}
	if act.StopProcessing() {
		return act, 0, nil
	}
	for len(body) > 0 {
		n := min(len(body), bodyChunk)
		act, err := s.BodyChunk(body[:n])
		if err != nil {
			return nil, 0, err
		}
		if act.StopProcessing() {
			return act, 0, nil
		}
		body = body[n:]
	}
	start := time.Now()
	_, act, err = s.End()
	return act, time.Since(start), err
}

var errNotAccepted = errors.New("milter did not accept")
