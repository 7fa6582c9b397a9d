package milter

import (
	"net/mail"
	"strings"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

// listState is what is known of one restricted address of the message.
type listState struct {
	list *config.List
	// satisfied: a valid subaddress or header token already let it pass.
	satisfied bool
	carrier   token.Carrier // of the token that satisfied it
	// deferredToken is a subaddress token bound to another sender than the
	// envelope sender; the From header may still match the binding.
	deferredToken string
	loop          bool // the message carries this list's loop marker
}

// maxHeaderValue bounds what is kept of the From and Content-Type fields.
// Postfix's header_size_limit (100 KiB) bounds them already; this keeps a
// misconfigured MTA from costing more.
const maxHeaderValue = 64 << 10

// message is the state of the message in progress on one connection. It
// is reset at MAIL FROM, on abort and after end of message; resetting keeps
// the backing array of lists so that the ordinary path allocates nothing.
type message struct {
	cfg    *config.Config
	idx    *index
	finder token.Finder
	from   string // envelope sender as the MTA gave it
	rcpts  int    // recipients let through at RCPT
	lists  []listState
	qid    string // queue id, once the MTA has given it
	client string // the SMTP client's address ({client_addr}), for the guard

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
	headerToken string
	eohDone     bool
	body        *bodyScan
	fromAddrs   []address.Address // parsed From field, at end of headers
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
func (m *message) add(l *config.List) *listState {
	for i := range m.lists {
		if m.lists[i].list == l {
			return &m.lists[i]
		}
	}
	m.lists = append(m.lists, listState{list: l})
	return &m.lists[len(m.lists)-1]
}

// header takes what the decision needs from one header field: the first
// From and Content-Type fields, the loop marker, the first token header.
func (m *message) header(name, value string) {
	// The go-milter client, unlike Postfix, keeps the space after the colon.
	value = strings.TrimLeft(value, " \t")
	switch {
	case strings.EqualFold(name, "From"):
		if !m.haveFrom {
			m.haveFrom, m.fromHeader = true, truncate(value)
		}
	case strings.EqualFold(name, "Content-Type"):
		if !m.haveCT {
			m.haveCT, m.contentType = true, truncate(value)
		}
	case strings.EqualFold(name, policy.LoopHeader):
		values := []string{value}
		for i := range m.lists {
			if policy.IsLoop(values, m.lists[i].list.Addr) {
				m.lists[i].loop = true
			}
		}
	}
	if m.headerToken == "" {
		m.headerToken = m.finder.InHeaderField(name, value)
	}
}

func truncate(s string) string {
	if len(s) > maxHeaderValue {
		return s[:maxHeaderValue]
	}
	return s
}

// headerFrom returns the addresses of the From field; garbage yields what
// could be parsed, possibly nothing.
func (m *message) headerFrom() []address.Address {
	if !m.haveFrom {
		return nil
	}
	list, err := mail.ParseAddressList(unfold(m.fromHeader))
	if err != nil {
		// One bad mailbox spoils the list: try the first mailbox alone.
		a, err := mail.ParseAddress(unfold(m.fromHeader))
		if err != nil {
			return nil
		}
		list = []*mail.Address{a}
	}
	out := make([]address.Address, 0, len(list))
	for _, a := range list {
		if p, err := address.Parse(a.Address); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func unfold(s string) string {
	return strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(s)
}

// mayHaveTokenPart reports whether a body of this Content-Type can carry a
// token part at all. token.Finder only examines multipart bodies (a
// single-part message is never a carrier), so for any other body the
// answer is known without reading it.
func mayHaveTokenPart(contentType string) bool {
	mt, _, _ := strings.Cut(strings.TrimSpace(contentType), ";")
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(mt)), "multipart/")
}
