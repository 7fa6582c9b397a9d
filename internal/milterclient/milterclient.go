// Package milterclient plays Postfix's part of a milter conversation with
// go-milter's client: connect, HELO, MAIL FROM, one RCPT per recipient,
// DATA, the header fields, the body, end of message. `restrictedmail demo`
// and the dry run of `restrictedmail test` drive the real milter with it.
package milterclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/mailheader"
)

// Timeout bounds each exchange with the milter.
const Timeout = time.Minute

// Verdict is what the milter decided about one message.
type Verdict struct {
	Accepted bool
	Stage    string // where: "rcpt", "data", "end of headers", "end of message"
	Reply    string // the SMTP reply of a refusal, e.g. "550 5.7.1 No posting token found: ..."
	// Refused holds the recipients refused at RCPT and their replies; the
	// message goes on without them, as in Postfix.
	Refused map[string]string
}

// String is "accepted" or "rejected: <reply>" ("deferred" for a 4xx).
func (v Verdict) String() string {
	if v.Accepted {
		return "accepted"
	}
	if len(v.Reply) > 0 && v.Reply[0] == '4' {
		return "deferred: " + v.Reply
	}
	return "rejected: " + v.Reply
}

// Ask runs one message from from to rcpts through the milter at addr
// (network "tcp" or "unix"). Addresses are bare; the client adds the
// angle brackets. msg is the whole message, header and body.
func Ask(network, addr, from string, rcpts []string, msg []byte) (Verdict, error) {
	if len(rcpts) == 0 {
		return Verdict{}, errors.New("milter conversation: no recipient")
	}
	s, err := gomilter.NewClient(network, addr,
		gomilter.WithReadTimeout(Timeout), gomilter.WithWriteTimeout(Timeout)).Session(nil)
	if err != nil {
		return Verdict{}, fmt.Errorf("connecting to the milter: %w", err)
	}
	defer s.Close()
	fail := func(err error) (Verdict, error) { return Verdict{}, fmt.Errorf("milter conversation: %w", err) }
	// Conn and Helo are always called, also when the milter negotiated them
	// away: the client tracks its state with them.
	if _, err := s.Conn("client.example.net", gomilter.FamilyInet, 25, "192.0.2.1"); err != nil {
		return fail(err)
	}
	if _, err := s.Helo("client.example.net"); err != nil {
		return fail(err)
	}
	act, err := s.Mail(from, "")
	if err != nil {
		return fail(err)
	}
	if v, done := decided("mail", act); done {
		return v, nil
	}
	v := Verdict{Refused: map[string]string{}}
	var last *gomilter.Action
	for _, r := range rcpts {
		act, err := s.Rcpt(r, "")
		if err != nil {
			return fail(err)
		}
		if act.StopProcessing() {
			v.Refused[r], last = act.SMTPReply, act
		} else if act.Type == gomilter.ActionAccept {
			return Verdict{Accepted: true, Stage: "rcpt", Refused: v.Refused}, nil
		}
	}
	if len(v.Refused) == len(rcpts) {
		// Postfix does not go on to DATA without a recipient.
		return Verdict{Stage: "rcpt", Reply: last.SMTPReply, Refused: v.Refused}, nil
	}
	act, err = s.DataStart()
	if err != nil {
		return fail(err)
	}
	if d, done := decided("data", act); done {
		d.Refused = v.Refused
		return d, nil
	}
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := mailheader.Read(br)
	if err != nil {
		return Verdict{}, fmt.Errorf("reading the message header: %w", err)
	}
	for f := h.Fields(); f.Next(); {
		if act, err = s.HeaderField(f.Key(), f.Value(), nil); err != nil {
			return fail(err)
		}
		if d, done := decided("header", act); done {
			d.Refused = v.Refused
			return d, nil
		}
	}
	if act, err = s.HeaderEnd(); err != nil {
		return fail(err)
	}
	if d, done := decided("end of headers", act); done {
		d.Refused = v.Refused
		return d, nil
	}
	if _, act, err = s.BodyReadFrom(br); err != nil {
		return fail(err)
	}
	d, _ := decided("end of message", act)
	if act.Type == gomilter.ActionContinue {
		d.Accepted = true // nothing left to decide: Postfix accepts
	}
	d.Refused = v.Refused
	return d, nil
}

// decided reports whether act ends the milter's part in the message: an
// accept (no more events are sent) or a refusal.
func decided(stage string, act *gomilter.Action) (Verdict, bool) {
	switch {
	case act.StopProcessing():
		return Verdict{Stage: stage, Reply: act.SMTPReply}, true
	case act.Type == gomilter.ActionAccept:
		return Verdict{Accepted: true, Stage: stage}, true
	case act.Type == gomilter.ActionDiscard:
		return Verdict{Stage: stage, Reply: "250 accepted and discarded"}, true
	}
	return Verdict{Stage: stage}, false
}
