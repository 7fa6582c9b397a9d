package dsn

import (
	"net/mail"
	"regexp"
	"strings"
)

// The plain-text bounces that some mail systems send instead of (or
// without) a report part. Each shape is recognised by its fixed sentence
// and read from the human-readable text only: the returned copy of the
// original that follows could quote anything, so reading stops at the
// shape's separator.

// shape reads one kind of plain-text bounce.
type shape struct {
	format string
	marker func(text string) bool
	read   func(text string) []Recipient
}

var shapes = []shape{
	{"qmail", contains("This is the qmail-send program"), readQmail},
	{"exim", contains("This message was created automatically by mail delivery software"), readExim},
	{"postfix", contains("This is the mail system at host", "I'm sorry to have to inform you that your message could not"), readPostfix},
	{"exchange", contains("Delivery has failed to these recipients or groups", "Delivery is delayed to these recipients or groups",
		"couldn't be delivered", "Diagnostic information for administrators"), readExchange},
	{"google", contains("wasn't delivered to", "Delivery to the following recipient failed permanently",
		"There was a temporary problem delivering your message to"), readGoogle},
}

func contains(any ...string) func(string) bool {
	return func(text string) bool {
		for _, s := range any {
			if strings.Contains(text, s) {
				return true
			}
		}
		return false
	}
}

// fromText reads the plain-text shapes, then the X-Failed-Recipients
// header (Exim's and others') on its own.
func fromText(h mail.Header, text string) (Notification, bool) {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	for _, s := range shapes {
		if !s.marker(text) {
			continue
		}
		if rs := s.read(text); len(rs) > 0 {
			return Notification{Kind: Report, Format: s.format, Recipients: rs}, true
		}
	}
	if xf := h.Get("X-Failed-Recipients"); xf != "" {
		var rs []Recipient
		status := findStatus(text)
		if status == "" || status[0] != '5' {
			status = "5.0.0"
		}
		for _, a := range strings.Split(xf, ",") {
			if a = strings.Trim(strings.TrimSpace(a), "<>"); strings.Contains(a, "@") && !strings.ContainsAny(a, " \t") {
				rs = append(rs, Recipient{Address: a, Action: Failed, Status: status})
			}
		}
		if len(rs) > 0 {
			return Notification{Kind: Report, Format: "x-failed-recipients", Recipients: rs}, true
		}
	}
	return Notification{}, false
}

// upTo cuts text at the first of the separators.
func upTo(text string, seps ...string) string {
	for _, s := range seps {
		if i := strings.Index(text, s); i >= 0 {
			text = text[:i]
		}
	}
	return text
}

// finish fills a recipient's status and action from its diagnostic; def
// is the action the shape's wording says (a warning: delayed).
func finish(r Recipient, def Action) Recipient {
	r.Diagnostic = strings.Join(strings.Fields(r.Diagnostic), " ")
	if r.Status == "" {
		r.Status = findStatus(r.Diagnostic)
	}
	if r.Status == "" {
		r.Status = defaultStatus(def)
	}
	if def == Delayed && r.Status[0] == '5' {
		// A warning never reports a final failure.
		r.Status = "4" + r.Status[1:]
	}
	r.Action = actionOf(r.Status, def)
	return r
}

var angleLine = regexp.MustCompile(`^<([^<>\s]+@[^<>\s]+)>:?\s*(.*)$`)

// readAngleBlocks reads "<address>: text" blocks, the rest of the block
// being the diagnostic (qmail, Postfix).
func readAngleBlocks(text string, def Action) []Recipient {
	var (
		out []Recipient
		cur *Recipient
	)
	flush := func() {
		if cur != nil {
			out = append(out, finish(*cur, def))
			cur = nil
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if m := angleLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			flush()
			cur = &Recipient{Address: m[1], Diagnostic: m[2]}
			continue
		}
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if cur != nil {
			cur.Diagnostic += " " + strings.TrimSpace(line)
		}
	}
	flush()
	return out
}

func readQmail(text string) []Recipient {
	text = upTo(text, "--- Below this line is a copy of the message", "--- Enclosed is a copy of the message")
	return readAngleBlocks(text, Failed)
}

func readPostfix(text string) []Recipient {
	def := Failed
	if strings.Contains(text, "THIS IS A WARNING ONLY") {
		def = Delayed
	}
	return readAngleBlocks(upTo(text, "Reporting-MTA:", "--- Delivery report unavailable"), def)
}

// readExim reads the addresses indented by two spaces after Exim's
// "failed:" or "not yet been delivered is/are:" line, each followed by
// its more deeply indented diagnostic.
func readExim(text string) []Recipient {
	text = upTo(text, "------ This is a copy of the message", "------ This is a copy of its headers")
	def := Failed
	if strings.Contains(text, "has not yet been delivered") {
		def = Delayed
	}
	var (
		out    []Recipient
		cur    *Recipient
		inList bool
	)
	flush := func() {
		if cur != nil {
			out = append(out, finish(*cur, def))
			cur = nil
		}
	}
	for _, line := range strings.Split(text, "\n") {
		trim := strings.TrimSpace(line)
		indent := len(line) - len(strings.TrimLeft(line, " \t"))
		switch {
		case !inList:
			inList = strings.HasSuffix(trim, "failed:") || strings.HasSuffix(trim, "delivered is:") || strings.HasSuffix(trim, "delivered are:")
		case trim == "":
		case indent > 0 && indent <= 2:
			flush()
			a, _, _ := strings.Cut(trim, " ")
			a = strings.TrimSuffix(strings.Trim(a, "<>"), ":")
			if !strings.Contains(a, "@") {
				continue
			}
			cur = &Recipient{Address: strings.Trim(a, "<>")}
		case indent > 2 && cur != nil:
			if strings.HasPrefix(trim, "host ") && cur.Diagnostic == "" {
				continue // the next hop, not its reply
			}
			cur.Diagnostic += " " + trim
		case indent == 0:
			flush()
			inList = strings.HasSuffix(trim, "failed:")
		}
	}
	flush()
	return out
}

var (
	googleAddr = regexp.MustCompile(`(?:wasn't delivered to|delivering your message to|recipient failed permanently:)\s+<?([^\s<>]+@[^\s<>]+)`)
	exchHead   = regexp.MustCompile(`Delivery (?:has failed|is delayed) to these recipients or groups:`)
	exchO365   = regexp.MustCompile(`Your message to\s+<?([^\s<>]+@[^\s<>]+?)>?\s+couldn't be delivered`)
	remoteSaid = regexp.MustCompile(`(?i)remote server returned '([^']*)'`)
)

// readGoogle reads Google's text bounces: one recipient per message, the
// remote server's reply after "The response from the remote server was:"
// (or "Technical details of ... failure:").
func readGoogle(text string) []Recipient {
	m := googleAddr.FindStringSubmatch(text + "\n")
	if m == nil {
		return nil
	}
	def := Failed
	if strings.Contains(text, "temporary problem") || strings.Contains(text, "will retry") {
		def = Delayed
	}
	r := Recipient{Address: strings.TrimRight(m[1], ".,;:>")}
	for _, intro := range []string{"The response from the remote server was:", "The response was:", "failure:"} {
		if _, after, ok := strings.Cut(text, intro); ok {
			r.Diagnostic = firstParagraph(after)
			break
		}
	}
	return []Recipient{finish(r, def)}
}

// readExchange reads Exchange's and Outlook.com's non-delivery reports:
// the recipients listed after "Delivery has failed to these recipients or
// groups:" (or "is delayed"), each with the reply quoted in the
// diagnostic section ("Remote Server returned '550 5.1.10 ...'").
func readExchange(text string) []Recipient {
	text = upTo(text, "Original message headers:")
	def := Failed
	if strings.Contains(text, "Delivery is delayed to these recipients") {
		def = Delayed
	}
	var addrs []string
	if loc := exchHead.FindStringIndex(text); loc != nil {
		list := upTo(text[loc[1]:], "Diagnostic information for administrators")
		for _, line := range strings.Split(list, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if a := strings.Trim(f[0], "<>"); strings.Contains(a, "@") && !strings.ContainsAny(a, "'\"") {
				addrs = append(addrs, a)
			}
		}
	} else if m := exchO365.FindStringSubmatch(text); m != nil {
		addrs = append(addrs, m[1])
	}
	var out []Recipient
	diag := text
	if _, after, ok := strings.Cut(text, "Diagnostic information for administrators"); ok {
		diag = after
	}
	for _, a := range addrs {
		r := Recipient{Address: a}
		// The diagnostic section names the address, then the reply.
		if i := strings.Index(diag, a); i >= 0 {
			if m := remoteSaid.FindStringSubmatch(diag[i:]); m != nil {
				r.Diagnostic = m[1]
			}
		}
		if r.Diagnostic == "" {
			if m := remoteSaid.FindStringSubmatch(diag); m != nil {
				r.Diagnostic = m[1]
			}
		}
		out = append(out, finish(r, def))
	}
	return out
}

// firstParagraph is the text up to the first blank line after some.
func firstParagraph(s string) string {
	var lines []string
	for _, line := range strings.Split(s, "\n") {
		t := strings.TrimSpace(line)
		if t == "" {
			if len(lines) > 0 {
				break
			}
			continue
		}
		lines = append(lines, t)
	}
	return strings.Join(lines, " ")
}
