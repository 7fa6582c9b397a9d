package dsn

import (
	"strings"
)

// fromReport reads RFC 3464's multipart/report: its delivery-status part,
// wherever the report sits in the message (some gateways wrap it in a
// multipart/mixed).
func fromReport(p part, depth int) (Notification, bool) {
	if depth > maxDepth {
		return Notification{}, false
	}
	mt, _ := p.mediaType()
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		rs := statusFields(string(p.decoded()))
		if len(rs) == 0 {
			return Notification{}, false
		}
		return Notification{Kind: Report, Format: "rfc3464", Recipients: rs}, true
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return Notification{}, false
	}
	for _, c := range p.parts() {
		if n, ok := fromReport(c, depth+1); ok {
			return n, true
		}
	}
	return Notification{}, false
}

// statusFields parses the body of a delivery-status part: a per-message
// block, then one block per recipient, separated by blank lines (RFC 3464
// §2.1). Field names are case-insensitive; continuation lines fold.
func statusFields(body string) []Recipient {
	var (
		out   []Recipient
		block = map[string]string{}
		last  string
	)
	flush := func() {
		if r, ok := recipientOf(block); ok {
			out = append(out, r)
		}
		block, last = map[string]string{}, ""
	}
	for _, line := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				block[last] += " " + strings.TrimSpace(line)
			}
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(name))
			if _, seen := block[last]; !seen {
				block[last] = strings.TrimSpace(value)
			}
		}
		if len(out) > 1000 {
			break
		}
	}
	flush()
	return out
}

// recipientOf makes a recipient of a per-recipient block; a per-message
// block (no Final-Recipient) is none.
func recipientOf(f map[string]string) (Recipient, bool) {
	addr := typedAddress(f["final-recipient"])
	if addr == "" {
		return Recipient{}, false
	}
	r := Recipient{
		Address:    addr,
		Original:   typedAddress(f["original-recipient"]),
		Action:     Action(strings.ToLower(strings.TrimSpace(f["action"]))),
		Status:     statusCode(f["status"]),
		Diagnostic: typedValue(f["diagnostic-code"]),
	}
	switch r.Action {
	case Failed, Delayed, Delivered, Relayed, Expanded:
	default:
		// An unknown or missing Action: the status class says it.
		r.Action = actionOf(r.Status, Failed)
	}
	if r.Status == "" {
		if s := findStatus(r.Diagnostic); s != "" {
			r.Status = s
		} else {
			r.Status = defaultStatus(r.Action)
		}
	}
	return r, true
}

// typedValue drops the type of "rfc822; x@example.org" or "smtp; 550 ...".
func typedValue(v string) string {
	if _, rest, ok := strings.Cut(v, ";"); ok {
		v = rest
	}
	return strings.TrimSpace(v)
}

// typedAddress is typedValue for an address, without angle brackets.
func typedAddress(v string) string {
	v = strings.Trim(typedValue(v), "<> \t")
	if !strings.Contains(v, "@") || strings.ContainsAny(v, " \t<>") {
		return ""
	}
	return v
}

// statusCode returns the enhanced status code at the start of v ("5.1.1
// (user unknown)" gives 5.1.1), or "".
func statusCode(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, " \t("); i >= 0 {
		v = v[:i]
	}
	if isStatus(v) {
		return v
	}
	return ""
}

// isStatus reports whether s is an enhanced status code (RFC 3463):
// class.subject.detail, class 2, 4 or 5, up to three digits each.
func isStatus(s string) bool {
	f := strings.Split(s, ".")
	if len(f) != 3 || len(f[0]) != 1 || f[0][0] != '2' && f[0][0] != '4' && f[0][0] != '5' {
		return false
	}
	for _, n := range f[1:] {
		if len(n) == 0 || len(n) > 3 {
			return false
		}
		for i := 0; i < len(n); i++ {
			if n[i] < '0' || n[i] > '9' {
				return false
			}
		}
	}
	return true
}

// actionOf is the action a status code's class means; def without one.
func actionOf(status string, def Action) Action {
	if status == "" {
		return def
	}
	switch status[0] {
	case '2':
		return Delivered
	case '4':
		return Delayed
	}
	return Failed
}

func defaultStatus(a Action) string {
	switch a {
	case Delayed:
		return "4.0.0"
	case Delivered, Relayed, Expanded:
		return "2.0.0"
	}
	return "5.0.0"
}

// findStatus finds the first enhanced status code in text, as a word of
// its own: not inside an IP address or a version number.
func findStatus(text string) string {
	for i := 0; i+5 <= len(text); i++ {
		c := text[i]
		if c != '2' && c != '4' && c != '5' || text[i+1] != '.' {
			continue
		}
		if i > 0 && (isDigit(text[i-1]) || text[i-1] == '.') {
			continue
		}
		j := i + 2
		for k := 0; k < 2; k++ {
			n := 0
			for j < len(text) && isDigit(text[j]) && n < 4 {
				j, n = j+1, n+1
			}
			if n == 0 || n > 3 {
				j = -1
				break
			}
			if k == 0 {
				if j >= len(text) || text[j] != '.' {
					j = -1
					break
				}
				j++
			}
		}
		if j < 0 || j < len(text) && (text[j] == '.' && j+1 < len(text) && isDigit(text[j+1]) || isDigit(text[j])) {
			continue
		}
		return text[i:j]
	}
	return ""
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
