package corpus

import (
	"bytes"
	"testing"
)

// What Postfix does to a message between its smtpd and the milter or the
// LMTP endpoint, so that the corpus tests feed the adapters what they get
// in production. Each rule is Postfix 3.7's default behaviour:
//
//   - smtpd strips the line endings (CRLF, or a bare LF) and cleanup
//     prepends its Received field, which names the envelope recipient;
//   - the header ends at the blank line or at the first line that is
//     neither a field nor a continuation (that line is body), also at a
//     first line that starts with white space;
//   - a header field longer than header_size_limit (102400 bytes) loses
//     the excess;
//   - the milter client sends each field as its name and its value without
//     the leading white space, folded lines joined by "\n", and the body
//     with CRLF line endings;
//   - the LMTP client sends CRLF line endings and breaks lines longer than
//     lmtp_line_length_limit (998) by inserting CRLF and a space.
const (
	headerSizeLimit = 102400
	lmtpLineLimit   = 998
)

// field is a header field as the milter protocol carries it.
type field struct{ name, value string }

// queued is a message as Postfix's queue holds it: header fields (each a
// list of lines, folding kept) and body lines, without line endings.
type queued struct {
	header [][]string
	body   [][]byte
}

func received(rcpt string) []string {
	return []string{
		"Received: from client.example.net (client.example.net [192.0.2.1])",
		"\tby mx.example.org (Postfix) with ESMTP id 4Xq1Yz2Hk9z1",
		"\tfor <" + rcpt + ">; Tue, 24 Nov 2026 10:00:01 +0000 (UTC)",
	}
}

// enqueue applies smtpd's and cleanup's rules to raw.
func enqueue(raw []byte, rcpt string) queued {
	lines := bytes.SplitAfter(raw, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	for i, l := range lines {
		l = bytes.TrimSuffix(l, []byte("\n"))
		lines[i] = bytes.TrimSuffix(l, []byte("\r"))
	}
	q := queued{header: [][]string{received(rcpt)}}
	i := 0
	for ; i < len(lines); i++ {
		l := lines[i]
		switch {
		case len(l) == 0:
			i++ // the blank line ends the header and is not body
			q.body = lines[i:]
			return q
		case (l[0] == ' ' || l[0] == '\t') && len(q.header) > 1:
			f := q.header[len(q.header)-1]
			q.header[len(q.header)-1] = append(f, string(l))
		case isField(l):
			q.header = append(q.header, []string{string(l)})
		default:
			q.body = lines[i:]
			return q
		}
	}
	return q
}

// isField reports whether l starts a header field: a name of printable
// characters other than the colon, optional white space, then a colon.
func isField(l []byte) bool {
	n := 0
	for n < len(l) && l[n] > ' ' && l[n] < 0x7f && l[n] != ':' {
		n++
	}
	if n == 0 {
		return false
	}
	for n < len(l) && (l[n] == ' ' || l[n] == '\t') {
		n++
	}
	return n < len(l) && l[n] == ':'
}

// truncateField keeps the first headerSizeLimit bytes of a field.
func truncateField(f []string) []string {
	size := 0
	for i, l := range f {
		if size+len(l) > headerSizeLimit {
			return append(f[:i:i], l[:headerSizeLimit-size])
		}
		size += len(l) + 1
	}
	return f
}

// lmtpView is the message as Postfix's LMTP client sends it.
func lmtpView(raw []byte, rcpt string) []byte {
	q := enqueue(raw, rcpt)
	q.header = truncateAll(q.header)
	var b bytes.Buffer
	for _, f := range q.header {
		for _, l := range f {
			writeLine(&b, []byte(l))
		}
	}
	b.WriteString("\r\n")
	for _, l := range q.body {
		writeLine(&b, l)
	}
	return b.Bytes()
}

func truncateAll(h [][]string) [][]string {
	for i, f := range h {
		h[i] = truncateField(f)
	}
	return h
}

// writeLine writes l with CRLF, broken as lmtp_line_length_limit says.
func writeLine(b *bytes.Buffer, l []byte) {
	for len(l) > lmtpLineLimit {
		b.Write(l[:lmtpLineLimit])
		b.WriteString("\r\n ")
		l = l[lmtpLineLimit:]
	}
	b.Write(l)
	b.WriteString("\r\n")
}

// milterView is the message as Postfix's milter client sends it.
func milterView(raw []byte, rcpt string) ([]field, []byte) {
	q := enqueue(raw, rcpt)
	q.header = truncateAll(q.header)
	fields := make([]field, 0, len(q.header))
	for _, f := range q.header {
		name, value, _ := bytes.Cut([]byte(f[0]), []byte(":"))
		v := string(bytes.TrimLeft(value, " \t"))
		for _, l := range f[1:] {
			v += "\n" + l
		}
		fields = append(fields, field{string(bytes.TrimRight(name, " \t")), v})
	}
	var body bytes.Buffer
	for _, l := range q.body {
		body.Write(l)
		body.WriteString("\r\n")
	}
	return fields, body.Bytes()
}

// rawMilterView splits raw without any of Postfix's rules, for the
// robustness pass: what a careless MTA might send.
func rawMilterView(raw []byte) ([]field, []byte) {
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		head, body, _ = bytes.Cut(raw, []byte("\n\n"))
	}
	var fields []field
	for _, l := range bytes.Split(head, []byte("\n")) {
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].value += "\n" + string(l)
			continue
		}
		name, value, _ := bytes.Cut(l, []byte(":"))
		fields = append(fields, field{string(name), string(bytes.TrimLeft(value, " "))})
	}
	return fields, body
}

func TestPostfixRules(t *testing.T) {
	t.Parallel()
	raw := []byte("From: a@example.net\nSubject: one\r\n two\nno header\nX-After: 1\n\nbody\n")
	fields, body := milterView(raw, "b@example.org")
	if len(fields) != 3 || fields[2] != (field{"Subject", "one\n two"}) || fields[0].name != "Received" {
		t.Errorf("fields %q", fields)
	}
	if string(body) != "no header\r\nX-After: 1\r\n\r\nbody\r\n" {
		t.Errorf("body %q", body)
	}
	long := append([]byte("Subject: "), bytes.Repeat([]byte("x"), 200000)...)
	fields, _ = milterView(append(long, "\n\nb\n"...), "b@example.org")
	if n := len("Subject: ") + len(fields[1].value); n != headerSizeLimit {
		t.Errorf("a 200 kB field kept %d bytes, want %d", n, headerSizeLimit)
	}
	out := lmtpView(append(long, "\n\nb\n"...), "b@example.org")
	for _, l := range bytes.Split(out, []byte("\r\n")) {
		if len(l) > lmtpLineLimit+1 {
			t.Fatalf("LMTP line of %d bytes", len(l))
		}
	}
	if f, _ := milterView([]byte(" x: y\nSubject: s\n\nb\n"), "b@example.org"); len(f) != 1 {
		t.Errorf("a leading continuation started a header: %q", f)
	}
}
