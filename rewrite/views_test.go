package rewrite

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // readers decode every charset
)

// A view is one text a mail client can show of a copy.
type view struct {
	where string
	text  []byte
	// tokenOnly: a view with every CRLF SP taken out, where only the
	// token used is looked for (scrub.go: the prefix rule reads through
	// the folds after long lines only).
	tokenOnly bool
}

// readerViews returns what a reader can be shown of msg, decoded by an
// independent parser (go-message, as a mail client would): the bytes; each
// header field of the message, of every part and of every forwarded
// message, with RFC 2047 words decoded; the parameters of Content-Type and
// Content-Disposition (RFC 2231 decoded); and every text part's content
// (text/*, or no valid media type, which readers show as text/plain),
// transfer encoding undone and text converted from its charset. The same
// again from msg with Postfix's folds (CRLF SP after a line of
// foldLineMin bytes or more) taken out, and each view also without those
// folds, and without any fold, so that a token cut by a fold is found.
func readerViews(msg []byte) []view {
	var vs []view
	for _, variant := range []struct {
		name string
		msg  []byte
	}{{"", msg}, {"unfolded ", unfoldPostfix(msg, foldLineMin)}} {
		vs = append(vs, view{where: variant.name + "bytes", text: variant.msg})
		e, err := message.Read(bytes.NewReader(variant.msg))
		if e == nil {
			vs = append(vs, view{where: variant.name + "unparsable", text: []byte(fmt.Sprint(err))})
			continue
		}
		vs = entityViews(vs, variant.name+"message", e, 0)
	}
	for i, n := 0, len(vs); i < n; i++ {
		if u := unfoldPostfix(vs[i].text, foldLineMin); !bytes.Equal(u, vs[i].text) {
			vs = append(vs, view{where: vs[i].where + " without long folds", text: u})
		}
		if u := unfoldPostfix(vs[i].text, 0); !bytes.Equal(u, vs[i].text) {
			vs = append(vs, view{where: vs[i].where + " without folds", text: u, tokenOnly: true})
		}
	}
	return vs
}

func entityViews(vs []view, where string, e *message.Entity, depth int) []view {
	for f := e.Header.Fields(); f.Next(); {
		text, err := f.Text()
		if err != nil {
			text = f.Value()
		}
		vs = append(vs, view{where: where + " header " + f.Key(), text: []byte(text)})
	}
	for _, k := range []string{"Content-Type", "Content-Disposition"} {
		_, params, _ := mimeParams(e.Header, k)
		for name, v := range params {
			vs = append(vs, view{where: where + " " + k + " " + name, text: []byte(v)})
		}
	}
	if depth > 64 {
		return vs
	}
	// As the RFC and mail clients read it: an invalid type is text/plain
	// (go-message's ContentType returns it raw).
	mt, _, err := mime.ParseMediaType(e.Header.Get("Content-Type"))
	if err != nil && mt == "" || !strings.Contains(mt, "/") {
		mt = "text/plain"
	}
	if mr := e.MultipartReader(); mr != nil {
		for i := 1; ; i++ {
			p, err := mr.NextPart()
			if p == nil || err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				if err != nil && err != io.EOF {
					vs = append(vs, view{where: where + " broken multipart", text: []byte(err.Error())})
				}
				break
			}
			vs = entityViews(vs, fmt.Sprintf("%s/%d", where, i), p, depth+1)
		}
		return vs
	}
	body, _ := io.ReadAll(e.Body)
	if strings.HasPrefix(mt, "message/") {
		if inner, _ := message.Read(bytes.NewReader(body)); inner != nil {
			return entityViews(vs, where+" forwarded", inner, depth+1)
		}
	}
	if !strings.HasPrefix(mt, "text/") && strings.Contains(mt, "/") {
		// An attachment: opened by another program, not shown as the
		// message's text. The scrub does not reach into it (README).
		return vs
	}
	return append(vs, view{where: where + " content " + mt, text: body})
}

func mimeParams(h message.Header, k string) (string, map[string]string, error) {
	if k == "Content-Disposition" {
		return h.ContentDisposition()
	}
	return h.ContentType()
}

// unfoldPostfix takes out the folds that Postfix may have inserted: CRLF
// SP (or LF SP) after a line of at least minLine bytes and between two
// lines that are not empty (Postfix breaks a line into pieces that are
// not, and an empty line may end a header).
func unfoldPostfix(b []byte, minLine int) []byte {
	if !bytes.Contains(b, []byte("\n ")) {
		return b
	}
	out := make([]byte, 0, len(b))
	lineStart := 0 // in b: where the physical line began
	for i := 0; i < len(b); i++ {
		if n := foldAt(b, i); n > 0 && i-lineStart >= max(1, minLine) &&
			i+n < len(b) && b[i+n] != '\r' && b[i+n] != '\n' {
			lineStart = i + n - 1 // the blank starts the next physical line
			i += n - 1
			continue
		}
		out = append(out, b[i])
		if b[i] == '\n' {
			lineStart = i + 1
		}
	}
	return out
}

// leaksIn returns where in the views of msg the token (any case) or the
// prefix followed by a token character can be read.
func leaksIn(msg []byte, prefix, tok string) []string {
	var found []string
	lowTok := strings.ToLower(tok)
	for _, v := range readerViews(msg) {
		if tok != "" && bytes.Contains(bytes.ToLower(v.text), []byte(lowTok)) {
			found = append(found, fmt.Sprintf("token in %s: %q", v.where, excerpt(v.text, lowTok)))
		}
		for rest := v.text; prefix != "" && !v.tokenOnly; {
			i := bytes.Index(rest, []byte(prefix))
			if i < 0 {
				break
			}
			if rest = rest[i+len(prefix):]; len(rest) > 0 && isTokenByte(rest[0]) {
				found = append(found, fmt.Sprintf("token line in %s: %q", v.where, prefix+string(rest[:min(len(rest), 40)])))
			}
		}
	}
	return found
}

func excerpt(b []byte, low string) string {
	i := bytes.Index(bytes.ToLower(b), []byte(low))
	return string(b[max(0, i-30):min(len(b), i+len(low)+30)])
}

// noLeak fails t when a reader can see the token or a token line in cp.
func noLeak(t testing.TB, cp []byte, tok string) {
	t.Helper()
	if l := leaksIn(cp, "RMTOKEN", tok); len(l) > 0 {
		t.Errorf("the copy shows a token:\n  %s\ncopy:\n%s", strings.Join(l, "\n  "), cp)
	}
}

// TestReaderViewsSeeEncodedTokens: the helper itself finds a token in each
// view it promises, so that a test passing with it means something.
func TestReaderViewsSeeEncodedTokens(t *testing.T) {
	t.Parallel()
	tok := scrubToken
	for name, msg := range map[string]string{
		"subject": "Subject: =?utf-8?q?a_" + tok[:10] + "?= =?iso-8859-1?b?" + b64s(tok[10:]) + "?=\r\n\r\nx\r\n",
		"base64":  "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64s("x "+tok) + "\r\n",
		"qp":      "Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + tok[:5] + "=\r\n" + tok[5:] + "\r\n",
		"fold":    "Subject: x\r\n\r\nabc " + tok[:3] + "\r\n " + tok[3:] + "\r\n",
		"forward": "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: =?utf-8?b?" + b64s(tok) + "?=\r\n\r\nhi\r\n--b--\r\n",
		"rfc2231": "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; name*0=\"" + tok[:4] + "\"; name*1=\"" + tok[4:] + "\"\r\n\r\nhi\r\n--b--\r\n",
		"utf16":   "Content-Type: text/plain; charset=utf-16le\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64s(utf16le(tok)) + "\r\n",
	} {
		if l := leaksIn([]byte(msg), "RMTOKEN", tok); len(l) == 0 {
			t.Errorf("%s: the views do not show the token", name)
		}
	}
}
