// Package dsn reads delivery status notifications: what a bounce says
// about each recipient of the message it is about.
//
// The standard shape is RFC 3464's multipart/report with a
// message/delivery-status part (RFC 6533's message/global-delivery-status
// too): one block of per-recipient fields per recipient, with
// Final-Recipient, Action, Status and Diagnostic-Code. Many mail systems
// send other shapes, or a report part that is missing or broken; Parse
// also reads the plain-text bounces of qmail, Exim, Postfix, Google and
// Microsoft Exchange/Outlook, and the X-Failed-Recipients header (shapes.go).
//
// Auto-replies (RFC 3834 "Auto-Submitted: auto-replied", vacation and
// out-of-office messages) are not bounces: Parse says so, and names no
// recipient. The parser never fails on hostile input: anything it cannot
// read is Unrecognised.
package dsn

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// MaxSize is how much of a message Parse reads: a bounce's report comes
// first, and a returned copy of the original can be large.
const MaxSize = 1 << 20

// maxDepth bounds the nesting of multiparts Parse walks into.
const maxDepth = 5

// Kind is what a message to a bounce address is.
type Kind string

// Kinds.
const (
	Unrecognised Kind = "unrecognised" // keep for the owner
	Report       Kind = "report"       // a delivery status notification
	AutoReply    Kind = "auto-reply"   // RFC 3834 or vacation: not a bounce
)

// Action is what happened to a recipient (RFC 3464 §2.3.3).
type Action string

// Actions.
const (
	Failed    Action = "failed"
	Delayed   Action = "delayed"
	Delivered Action = "delivered"
	Relayed   Action = "relayed"
	Expanded  Action = "expanded"
)

// Recipient is one recipient's entry.
type Recipient struct {
	Address    string `json:"address"`              // Final-Recipient (or the address the text names)
	Original   string `json:"original,omitempty"`   // Original-Recipient, when given
	Action     Action `json:"action"`               // failed, delayed, delivered, relayed, expanded
	Status     string `json:"status"`               // enhanced status code, e.g. 5.1.1
	Diagnostic string `json:"diagnostic,omitempty"` // the remote server's reply, when given
}

// Notification is what Parse found.
type Notification struct {
	Kind       Kind        `json:"kind"`
	Format     string      `json:"format,omitempty"` // rfc3464, qmail, exim, postfix, google, exchange, x-failed-recipients
	Recipients []Recipient `json:"recipients,omitempty"`
}

// Parse reads one message (header and body) and says what it is. It reads
// at most MaxSize bytes of r.
func Parse(r io.Reader) Notification {
	raw, _ := io.ReadAll(io.LimitReader(r, MaxSize))
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return Notification{Kind: Unrecognised}
	}
	body, _ := io.ReadAll(msg.Body)
	p := part{header: textproto.MIMEHeader(msg.Header), body: body}
	if n, ok := fromReport(p, 0); ok {
		return n
	}
	text := p.text(0)
	if n, ok := fromText(msg.Header, text); ok {
		return n
	}
	if isAutoReply(msg.Header) {
		return Notification{Kind: AutoReply}
	}
	return Notification{Kind: Unrecognised}
}

// part is one MIME entity, its body not yet decoded.
type part struct {
	header textproto.MIMEHeader
	body   []byte
}

func (p part) mediaType() (string, map[string]string) {
	ct := p.header.Get("Content-Type")
	if ct == "" {
		return "text/plain", nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		// A broken parameter list still names its type.
		mt, _, _ = strings.Cut(ct, ";")
		return strings.ToLower(strings.TrimSpace(mt)), nil
	}
	return mt, params
}

// decoded is the body with its Content-Transfer-Encoding undone; what
// cannot be decoded is left as it is.
func (p part) decoded() []byte {
	switch strings.ToLower(strings.TrimSpace(p.header.Get("Content-Transfer-Encoding"))) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, p.body)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil && n == 0 {
			return p.body
		}
		return out[:n]
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(p.body)))
		if err != nil && len(out) == 0 {
			return p.body
		}
		return out
	}
	return p.body
}

// parts splits a multipart body; nil when it is none or unreadable.
func (p part) parts() []part {
	mt, params := p.mediaType()
	if !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return nil
	}
	mr := multipart.NewReader(bytes.NewReader(p.body), params["boundary"])
	var out []part
	for len(out) < 50 {
		np, err := mr.NextRawPart()
		if err != nil {
			break
		}
		b, err := io.ReadAll(np)
		if err != nil && len(b) == 0 {
			break
		}
		out = append(out, part{header: np.Header, body: b})
	}
	return out
}

// text returns the first text/plain content (decoded), looking into
// multiparts but not into attached messages (the original's text could
// quote anything).
func (p part) text(depth int) string {
	mt, _ := p.mediaType()
	switch {
	case mt == "text/plain":
		return string(p.decoded())
	case strings.HasPrefix(mt, "multipart/") && depth < maxDepth:
		for _, c := range p.parts() {
			if t := c.text(depth + 1); t != "" {
				return t
			}
		}
	}
	return ""
}

// isAutoReply recognises RFC 3834 auto-replies and the usual vacation
// markers. Exim marks its own bounces auto-replied too, so this is asked
// only of a message that is no bounce.
func isAutoReply(h mail.Header) bool {
	as := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted")))
	if strings.HasPrefix(as, "auto-replied") {
		return true
	}
	if h.Get("X-Autoreply") != "" || h.Get("X-Autorespond") != "" {
		return true
	}
	if strings.EqualFold(strings.TrimSpace(h.Get("Precedence")), "auto_reply") {
		return true
	}
	subj := strings.ToLower(h.Get("Subject"))
	for _, s := range []string{"out of office", "automatic reply", "auto-reply", "autoreply", "vacation"} {
		if strings.Contains(subj, s) {
			return true
		}
	}
	return false
}
