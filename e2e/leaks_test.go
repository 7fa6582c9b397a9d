package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // readers decode every charset

	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/token"
)

// The leak tests send a token that is valid for board@example.org through
// the whole path — Postfix's smtpd and the milter, the queue, Postfix's
// LMTP client, the endpoint, the relay — with the same token also pasted
// where a reader sees it only decoded: an RFC 2047 encoded Subject, a
// base64 text part, a quoted-printable text part, and a line longer than
// Postfix's lmtp_line_length_limit (998), which Postfix's LMTP client
// breaks with CRLF SP inside the token. No copy at the relay may show the
// token, or any token's file line, in any view a mail client decodes
// (copyViews), and each copy's DKIM signature must verify.

// otherLine is another token's file line, pasted too: the prefix rule
// removes any token's.
const otherLine = "RMTOKENnotthistoken2butanother3aaaaaa"

// leakCase sends msg (which carries tok) to the list and checks the
// copies.
func leakCase(t *testing.T, w *world, tok string, msg []byte) [][]byte {
	t.Helper()
	res := w.submit(author, []string{list}, msg)
	if res.Mail != nil || res.Data != nil || res.Rcpt[list] != nil {
		t.Fatalf("Postfix refused the tokened message: MAIL %v, RCPT %v, DATA %v", res.Mail, res.Rcpt[list], res.Data)
	}
	w.relay.WaitRecipients(t, len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	exactlyOnce(t, w.relay.Recipients(), defaultMembers)
	var copies [][]byte
	for _, m := range w.relay.Messages() {
		copies = append(copies, m.Data)
		for _, l := range copyLeaks(m.Data, "RMTOKEN", tok) {
			t.Errorf("a copy to %v shows a token: %s", m.Rcpts, l)
		}
		if got := dkimtest.VerifyGo(t, m.Data, w.key); len(got) != 1 || got[0] != "example.org" {
			t.Errorf("the copy's signature: %v", got)
		}
	}
	if t.Failed() && len(copies) > 0 {
		t.Logf("a copy:\n%s", copies[0])
	}
	leaked := 0
	for _, cp := range copies {
		leaked += len(copyLeaks(cp, "RMTOKEN", tok))
	}
	t.Logf("RELIABILITY scenario=%s messages=1 lost=0 duplicated=0 leaked=%d panics=%d",
		strings.TrimPrefix(t.Name(), "Test"), leaked, strings.Count(w.rm.log.String(), "panic"))
	return copies
}

// leakMessage is a message with the token file attached (the carrier)
// and extra header fields and parts before it.
func leakMessage(tok, header string, parts ...string) []byte {
	var b strings.Builder
	b.WriteString("From: Alice <" + author + ">\r\nTo: Example Board <" + list + ">\r\n" + header +
		"Message-ID: <" + token.NewID() + "@example.net>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n")
	for _, p := range parts {
		b.WriteString("--b1\r\n" + p)
	}
	b.WriteString("--b1\r\nContent-Type: text/plain; name=\"token.txt\"\r\nContent-Disposition: attachment; filename=\"token.txt\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(token.FileContent("RMTOKEN", tok)) + "\r\n--b1--\r\n")
	return []byte(b.String())
}

func b64Wrapped(s string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	return b.String() + enc + "\r\n"
}

// TestLeakEncodedSubject: the token in an encoded Subject, split across
// two encoded words of two charsets, one of them in upper case, and in an
// encoded display name.
func TestLeakEncodedSubject(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	tok := token.Generate()
	w.issue(tok, nil)
	subject := "Subject: =?iso-8859-1?q?M=F8te_" + tok[:11] + "?=\r\n =?utf-8?b?" +
		base64.StdEncoding.EncodeToString([]byte(strings.ToUpper(tok[11:])+" og "+otherLine)) + "?=\r\n" +
		"Cc: =?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte("Styret "+tok)) + "?= <styret@example.net>\r\n"
	copies := leakCase(t, w, tok, leakMessage(tok, subject, "Content-Type: text/plain; charset=utf-8\r\n\r\nHei.\r\n"))
	for _, cp := range copies {
		e, _ := message.Read(bytes.NewReader(cp))
		if s, _ := e.Header.Text("Subject"); s != "Møte [token removed] og [token removed]" {
			t.Errorf("Subject reads %q", s)
		}
	}
}

// TestLeakBase64TextPart: the token and another token's line in a base64
// text/plain part and in a base64 text/html part.
func TestLeakBase64TextPart(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	tok := token.Generate()
	w.issue(tok, nil)
	text := strings.Repeat("Referat fra styremøtet. ", 3) + tok + "\r\n" + otherLine + "\r\n"
	html := "<html><body><p>Token: <b>" + strings.ToUpper(tok) + "</b></p></body></html>\r\n"
	copies := leakCase(t, w, tok, leakMessage(tok, "Subject: base64\r\n",
		"Content-Type: multipart/alternative; boundary=alt\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"+b64Wrapped(text)+
			"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"+b64Wrapped(html)+"--alt--\r\n"))
	for _, cp := range copies {
		if !viewsContain(cp, "Referat fra styremøtet. Referat fra styremøtet. Referat fra styremøtet. [token removed]\r\n[token removed]\r\n") {
			t.Errorf("the text part does not read as the original with the token replaced")
		}
	}
}

// TestLeakQPTextPart: the token in a quoted-printable part, cut by a soft
// line break and, a second time, written with escapes.
func TestLeakQPTextPart(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	tok := token.Generate()
	w.issue(tok, nil)
	var escaped strings.Builder
	for _, c := range []byte(tok) {
		fmt.Fprintf(&escaped, "=%02X", c)
	}
	qp := "Caf=C3=A9 " + tok[:14] + "=\r\n" + tok[14:] + " and =\r\n" + escaped.String()[:48] + "=\r\n" + escaped.String()[48:] + "\r\nRMTOK=\r\nEN" + otherLine[7:] + "\r\n"
	copies := leakCase(t, w, tok, leakMessage(tok, "Subject: qp\r\n",
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+qp))
	for _, cp := range copies {
		if !viewsContain(cp, "Café [token removed] and [token removed]\r\n[token removed]") {
			t.Errorf("the text part does not read as the original with the token replaced:\n%s", cp)
		}
	}
}

// TestLeakFoldedLongLine: lines longer than 998 bytes, which Postfix's LMTP
// client breaks with CRLF SP — here inside the token, inside another
// token's line, and inside a long Subject.
func TestLeakFoldedLongLine(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true})
	tok := token.Generate()
	w.issue(tok, nil)
	line1 := strings.Repeat("a", 998-13) + tok + " " + strings.Repeat("b", 1200)     // cut after 13 characters of the token
	line2 := strings.Repeat("c", 998-4) + otherLine + " " + strings.Repeat("d", 100) // cut inside the prefix
	subject := "Subject: " + strings.Repeat("s", 998-9-20) + tok + " end\r\n"
	copies := leakCase(t, w, tok, leakMessage(tok, subject,
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"+line1+"\r\n"+line2+"\r\n"))
	if !strings.Contains(w.pf.Log(), "breaking line > 998 bytes with <CR><LF>SPACE") {
		t.Errorf("Postfix did not fold the long lines; the test shows nothing")
	}
	for _, cp := range copies {
		if !viewsContain(cp, strings.Repeat("a", 998-13)+"[token removed]") || !viewsContain(cp, strings.Repeat("c", 998-4)+"[token removed]") {
			t.Errorf("the long lines do not read as the originals with the tokens replaced:\n%s", cp)
		}
		for _, l := range bytes.Split(cp, []byte("\r\n")) {
			if len(l) > 998 {
				t.Errorf("a line of %d bytes in the copy: the relay would fold it and break the signature", len(l))
			}
		}
	}
}

// copyLeaks returns where a reader of msg can see the token (any case) or
// the prefix followed by a token character: in its bytes, in each header
// field of the message, its parts and forwarded messages with RFC 2047
// decoded, in Content-Type and Content-Disposition parameters, and in each
// text part decoded (transfer encoding and charset); each also with
// Postfix's folds taken out.
func copyLeaks(msg []byte, prefix, tok string) []string {
	var views []string
	views = append(views, string(msg), string(unfolded(msg)))
	for _, m := range [][]byte{msg, unfolded(msg)} {
		if e, _ := message.Read(bytes.NewReader(m)); e != nil {
			views = entityTexts(views, e, 0)
		}
	}
	var found []string
	low := strings.ToLower(tok)
	for _, v := range views {
		for _, v := range []string{v, string(unfolded([]byte(v)))} {
			if strings.Contains(strings.ToLower(v), low) {
				found = append(found, "the token in "+quoteAround(v, strings.Index(strings.ToLower(v), low)))
			}
			for i := strings.Index(v, prefix); i >= 0; {
				if j := i + len(prefix); j < len(v) && isTokenChar(v[j]) {
					found = append(found, "a token line in "+quoteAround(v, i))
				}
				k := strings.Index(v[i+1:], prefix)
				if k < 0 {
					break
				}
				i += 1 + k
			}
		}
	}
	return found
}

func entityTexts(views []string, e *message.Entity, depth int) []string {
	for f := e.Header.Fields(); f.Next(); {
		text, err := f.Text()
		if err != nil {
			text = f.Value()
		}
		views = append(views, f.Key()+": "+text)
	}
	for _, k := range []string{"Content-Type", "Content-Disposition"} {
		_, params, _ := mime.ParseMediaType(e.Header.Get(k))
		for _, v := range params {
			views = append(views, v)
		}
	}
	if depth > 32 {
		return views
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if p == nil || err == io.EOF {
				break
			}
			views = entityTexts(views, p, depth+1)
		}
		return views
	}
	mt, _, _ := mime.ParseMediaType(e.Header.Get("Content-Type"))
	body, _ := io.ReadAll(e.Body)
	if strings.HasPrefix(mt, "message/") {
		if inner, _ := message.Read(bytes.NewReader(body)); inner != nil {
			return entityTexts(views, inner, depth+1)
		}
	}
	return append(views, string(body))
}

// viewsContain reports whether some decoded view of msg, or of msg
// without Postfix's folds, contains s.
func viewsContain(msg []byte, s string) bool {
	for _, m := range [][]byte{msg, unfolded(msg)} {
		e, _ := message.Read(bytes.NewReader(m))
		if e == nil {
			continue
		}
		for _, v := range entityTexts(nil, e, 0) {
			if strings.Contains(v, s) {
				return true
			}
		}
	}
	return false
}

// unfolded takes out the folds Postfix inserts (CRLF SP between two
// lines that are not empty).
func unfolded(b []byte) []byte {
	out := make([]byte, 0, len(b))
	lineStart := 0
	for i := 0; i < len(b); i++ {
		if b[i] == '\r' && i+3 < len(b) && b[i+1] == '\n' && b[i+2] == ' ' && b[i+3] != '\r' && i > lineStart {
			i += 2
			continue
		}
		out = append(out, b[i])
		if b[i] == '\n' {
			lineStart = i + 1
		}
	}
	return out
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func quoteAround(s string, i int) string {
	return fmt.Sprintf("%q", s[max(0, i-40):min(len(s), i+60)])
}
