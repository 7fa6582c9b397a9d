package milter

import (
	"strings"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

// listState is what is known of one restricted address of the message:
// the facts gathered so far, for policy.Decide.
type listState struct {
	facts   policy.Facts
	carrier token.Carrier // of the token in facts
	// passed: the verdict is a final pass (a valid subaddress token, say);
	// the later stages still check the loop marker.
	passed bool
}

// maxHeaderValue bounds what is kept of the From and Content-Type fields.
// Postfix's header_size_limit (100 KiB) bounds them already; this keeps a
// misconfigured MTA from costing more.
const maxHeaderValue = 64 << 10

// message is the state of the message in progress on one connection. It
// is reset at MAIL FROM, on abort and after end of message; resetting keeps
// the backing array of lists so that the ordinary path allocates nothing.
type message struct {
	rules *policy.Rules
	idx   *index
	from  string // envelope sender as the MTA gave it
	rcpts int    // recipients let through at RCPT
	// outsiders counts the recipients let through that are no restricted
	// address: a tokened message must not reach them (policy.Outsiders).
	outsiders int
	lists     []listState
	qid       string // queue id, once the MTA has given it
	client    string // the SMTP client's address ({client_addr}), for the guard

	// failed makes every later reply a temporary failure: an internal error
	// (a panic) hit a callback whose reply the MTA does not wait for.
	failed bool
	cause  error

	sender       address.Address // parsed envelope sender
	senderParsed bool

	fromHeader  string
	haveFrom    bool
	contentType string
	haveCT      bool
	messageID   string // the first Message-ID field's, as policy.MessageIDKey gives it
	haveMID     bool
	headerToken string
	eohDone     bool
	body        *bodyScan
}

func (m *message) reset() {
	if m.body != nil {
		m.body.abort()
	}
	clear(m.lists)
	*m = message{lists: m.lists[:0]}
}

// restricted reports whether the message has a restricted recipient.
func (m *message) restricted() bool { return len(m.lists) > 0 }

// fail records an internal error; the message will get a 451.
func (m *message) fail(err error) {
	m.failed, m.cause = true, err
	if m.body != nil {
		m.body.abort()
		m.body = nil
	}
}

// envelopeSender parses the envelope sender once, on the restricted path.
// An unparsable sender counts as none: it can still match a binding
// through the From header.
func (m *message) envelopeSender() address.Address {
	if !m.senderParsed {
		m.senderParsed = true
		if a, err := address.Parse(m.from); err == nil {
			m.sender = a
		}
	}
	return m.sender
}

// add records a restricted recipient; several recipients of one list
// share its state.
func (m *message) add(l *policy.List) *listState {
	if st := m.find(l); st != nil {
		return st
	}
	m.lists = append(m.lists, listState{facts: policy.Facts{List: l}})
	return &m.lists[len(m.lists)-1]
}

// find returns the state of l, or nil.
func (m *message) find(l *policy.List) *listState {
	for i := range m.lists {
		if m.lists[i].facts.List == l {
			return &m.lists[i]
		}
	}
	return nil
}

// header takes what the decision needs from one header field: the first
// From, Content-Type and Message-ID fields, the loop marker, the first
// token header.
func (m *message) header(name, value string) {
	// The go-milter client, unlike Postfix, keeps the space after the colon.
	value = strings.TrimLeft(value, " \t")
	switch {
	case strings.EqualFold(name, "From"):
		if !m.haveFrom {
			m.haveFrom, m.fromHeader = true, truncate(value)
		}
	case strings.EqualFold(name, "Message-ID"):
		if !m.haveMID {
			m.haveMID, m.messageID = true, policy.MessageIDKey(value)
		}
	case strings.EqualFold(name, "Content-Type"):
		if !m.haveCT {
			m.haveCT, m.contentType = true, truncate(value)
		}
	case strings.EqualFold(name, policy.LoopHeader):
		// Every recipient is known by now (RCPT comes before DATA).
		values := []string{value}
		for i := range m.lists {
			if policy.IsLoop(values, m.lists[i].facts.List.Addr) {
				m.lists[i].facts.Loop = true
			}
		}
	}
	if m.headerToken == "" {
		m.headerToken = m.rules.Finder.InHeaderField(name, value)
	}
}

func truncate(s string) string {
	if len(s) > maxHeaderValue {
		return s[:maxHeaderValue]
	}
	return s
}

// mayHaveTokenPart reports whether a body of this Content-Type can carry a
// token part at all. token.Finder only examines multipart bodies (a
// single-part message is never a carrier), so for any other body the
// answer is known without reading it.
func unfold(s string) string {
	return strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(s)
}

func mayHaveTokenPart(contentType string) bool {
	mt, _, _ := strings.Cut(strings.TrimSpace(contentType), ";")
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(mt)), "multipart/")
}
