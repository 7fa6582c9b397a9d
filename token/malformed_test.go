package token

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// robust runs every entry point on msg: none may panic or hang, StripParts
// never grows the body, and what it leaves holds no token part.
func robust(t *testing.T, f Finder, msg []byte) (found Found, stripped []byte, removed int) {
	t.Helper()
	within(t, func() {
		var err error
		found, err = f.Find(bytes.NewReader(msg))
		if err != nil {
			t.Errorf("Find: %v", err)
		}
		ct, body, err := splitMessage(msg)
		if err != nil {
			t.Errorf("reading the header: %v", err)
			return
		}
		var out bytes.Buffer
		first, n, err := f.StripParts(&out, ct, bytes.NewReader(body))
		if err != nil {
			t.Errorf("StripParts: %v", err)
		}
		if out.Len() > len(body) {
			t.Errorf("StripParts wrote %d bytes from %d", out.Len(), len(body))
		}
		if tok, _ := f.InBody(ct, bytes.NewReader(body)); tok != first {
			t.Errorf("InBody found %q, StripParts %q", tok, first)
		}
		if tok, _ := f.InBody(ct, bytes.NewReader(out.Bytes())); tok != "" {
			t.Errorf("InBody found %q after StripParts", tok)
		}
		stripped, removed = out.Bytes(), n
	})
	return found, stripped, removed
}

func TestMissingClosingBoundary(t *testing.T) {
	t.Parallel()
	tok := Generate()
	msg := "Content-Type: multipart/mixed; boundary=b\n\n--b\n" + textPart + "--b\n" + tokenPart("RMTOKEN"+tok+"\n")
	endings(t, msg, func(t *testing.T, msg string) {
		found, out, removed := robust(t, rm(), []byte(msg))
		if found.Token != tok || removed != 1 {
			t.Errorf("Find = %q, removed %d; want the token of the unclosed last part", found.Token, removed)
		}
		want := bodyOf(t, msg)
		want = want[:strings.LastIndex(want, "--b")]
		if string(out) != want {
			t.Errorf("StripParts = %q, want %q", out, want)
		}
	})
	// An unclosed nested multipart ends at its parent's next delimiter.
	msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/alternative; boundary=c\n\n--c\n" +
		textPart + "--b\n" + tokenPart("RMTOKEN"+tok+"\n") + "--b--\n"
	if found, _, removed := robust(t, rm(), []byte(msg)); found.Token != tok || removed != 1 {
		t.Errorf("unclosed nested multipart: Find = %q, removed %d", found.Token, removed)
	}
}

func TestMissingBoundaryParameter(t *testing.T) {
	t.Parallel()
	msg := "Content-Type: multipart/mixed\n\n--b\n" + tokenPart("RMTOKEN"+Generate()+"\n") + "--b--\n"
	found, out, removed := robust(t, rm(), []byte(msg))
	if found.OK() || removed != 0 || string(out) != bodyOf(t, msg) {
		t.Errorf("no boundary: found %v, removed %d", found, removed)
	}
	// The same inside: the nested part is one opaque leaf.
	msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/mixed; charset=x\n\n--c\n" +
		tokenPart("RMTOKEN"+Generate()+"\n") + "--c--\n--b--\n"
	if found, _, _ := robust(t, rm(), []byte(msg)); found.OK() {
		t.Errorf("nested multipart without boundary: found %v", found)
	}
	// A boundary longer than RFC 2046 allows is no boundary.
	long := strings.Repeat("x", 71)
	msg = "Content-Type: multipart/mixed; boundary=" + long + "\n\n--" + long + "\n" + tokenPart("RMTOKEN"+Generate()+"\n") + "--" + long + "--\n"
	if found, _, _ := robust(t, rm(), []byte(msg)); found.OK() {
		t.Errorf("71-character boundary: found %v", found)
	}
}

// deep builds a message whose token part is depth multiparts down.
func deep(depth int, tok string) string {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=d0\n\n")
	for i := 0; i < depth-1; i++ {
		fmt.Fprintf(&b, "--d%d\nContent-Type: multipart/mixed; boundary=d%d\n\n", i, i+1)
	}
	fmt.Fprintf(&b, "--d%d\n%s", depth-1, tokenPart("RMTOKEN"+tok+"\n"))
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--d%d--\n", i)
	}
	return b.String()
}

func TestDeepNesting(t *testing.T) {
	t.Parallel()
	tok := Generate()
	msg := deep(100, tok)
	found, out, removed := robust(t, rm(), []byte(msg))
	if found.Token != tok || removed != 1 {
		t.Errorf("100 levels: Find = %q, removed %d", found.Token, removed)
	}
	if want := strings.Replace(bodyOf(t, msg), "--d99\n"+tokenPart("RMTOKEN"+tok+"\n"), "", 1); string(out) != want {
		t.Errorf("100 levels: StripParts left %q", out[max(0, len(out)-200):])
	}
	// The walker follows 128 levels; deeper multiparts are opaque leaves,
	// and reading them costs no more than reading any other part.
	if found, _, removed := robust(t, rm(), []byte(deep(128, tok))); found.Token != tok || removed != 1 {
		t.Errorf("128 levels: Find = %q, removed %d", found.Token, removed)
	}
	msg = deep(5000, tok)
	found, out, removed = robust(t, rm(), []byte(msg))
	if found.OK() || removed != 0 || string(out) != bodyOf(t, msg) {
		t.Errorf("5000 levels: found %v, removed %d", found, removed)
	}
}

func TestLongLines(t *testing.T) {
	t.Parallel()
	tok := Generate()
	long := strings.Repeat("x", 1<<20)
	tests := map[string]string{
		"in the preamble":  "Content-Type: multipart/mixed; boundary=b\n\n" + long + "\n--b\n" + tokenPart("RMTOKEN"+tok+"\n") + "--b--\n",
		"in a part":        mixed("", "Content-Type: text/plain\n\n"+long+"\n", tokenPart("RMTOKEN"+tok+"\n")),
		"in a part header": mixed("", "Content-Type: text/plain; x=\""+long+"\"\n\nhi\n", tokenPart("RMTOKEN"+tok+"\n")),
		// A delimiter-like start of a long line is no delimiter.
		"long delimiter": mixed("", "Content-Type: text/plain\n\n--outer"+long+"\n", tokenPart("RMTOKEN"+tok+"\n")),
	}
	for name, msg := range tests {
		found, out, removed := robust(t, rm(), []byte(msg))
		if found.Token != tok || removed != 1 {
			t.Errorf("%s: Find = %q, removed %d", name, found.Token, removed)
		}
		if !bytes.Contains(out, []byte(long)) {
			t.Errorf("%s: the long line was not kept", name)
		}
	}
	// A delimiter at the end of a long line is none: the token part
	// after it is content of the long part.
	msg := mixed("", "Content-Type: text/plain\n\n"+long, tokenPart("RMTOKEN"+tok+"\n"))
	if found, out, _ := robust(t, rm(), []byte(msg)); found.OK() || string(out) != bodyOf(t, msg) {
		t.Errorf("delimiter at the end of a long line: found %v", found)
	}
	// The token file itself as one long line: the token is too long.
	msg = mixed("", tokenPart("RMTOKEN"+long+"\n"))
	if found, out, _ := robust(t, rm(), []byte(msg)); found.OK() || string(out) != bodyOf(t, msg) {
		t.Errorf("1 MB token: found %v", found)
	}
	// A 1 MB line with no line ending at all, as the whole body.
	msg = "Content-Type: multipart/mixed; boundary=b\n\n" + long
	if found, out, _ := robust(t, rm(), []byte(msg)); found.OK() || string(out) != long {
		t.Errorf("1 MB body line: found %v, %d bytes out", found, len(out))
	}
}

func TestBareCR(t *testing.T) {
	t.Parallel()
	tok := Generate()
	msg := strings.ReplaceAll(mixed("", textPart, tokenPart("RMTOKEN"+tok+"\n")), "\n", "\r")
	// With no line feed, the header never ends: the whole message is one
	// unterminated header line. Nothing is found, nothing breaks.
	found, _, removed := robust(t, rm(), []byte(msg))
	if found.OK() || removed != 0 {
		t.Errorf("bare CR message: found %v, removed %d", found, removed)
	}
	// Bare CR inside a body with proper line ends elsewhere.
	body := strings.ReplaceAll(mixed("", textPart, tokenPart("RMTOKEN"+tok+"\n")), "\nHello, board.\n", "\nHello,\rboard.\r\r")
	if found, _, _ := robust(t, rm(), []byte(body)); found.Token != tok {
		t.Errorf("bare CR in a text part: Find = %q", found.Token)
	}
	// A header with bare CR line ends and an LF body.
	cr := "Content-Type: multipart/mixed; boundary=b\r\rbody\n--b\n" + tokenPart("RMTOKEN"+tok+"\n") + "--b--\n"
	robust(t, rm(), []byte(cr))
}

func TestNULBytes(t *testing.T) {
	t.Parallel()
	tok := Generate()
	msg := mixed("", "Content-Type: text/plain\n\n\x00\x00binary\x00\n", tokenPart("RMTOKEN"+tok+"\x00\n"))
	found, out, removed := robust(t, rm(), []byte(msg))
	if found.Token != tok || removed != 1 || !bytes.Contains(out, []byte("\x00\x00binary\x00\n")) {
		t.Errorf("NUL bytes: Find = %q, removed %d", found.Token, removed)
	}
	msg = mixed("", tokenPart("RMTOKEN\x00"+tok+"\n"))
	if found, _, _ := robust(t, rm(), []byte(msg)); found.OK() {
		t.Errorf("NUL between prefix and token: found %v", found)
	}
	nul := "Content-Type: multipart/mixed; boundary=b\n\x00\n--b\n" + tokenPart("RMTOKEN"+tok+"\n") + "--b--\n"
	robust(t, rm(), []byte(nul))
}

func TestInvalidEncodings(t *testing.T) {
	t.Parallel()
	tok := Generate()
	for name, part := range map[string]string{
		"base64 garbage":   "Content-Transfer-Encoding: base64\n\n!!!!****\n%%%%\n",
		"base64 bad pad":   "Content-Transfer-Encoding: base64\n\n=UkVG==UkVG\n",
		"base64 truncated": "Content-Transfer-Encoding: base64\n\nUk1U\n",
		"qp bad escape":    "Content-Transfer-Encoding: quoted-printable\n\n=ZZRMTOKEN" + tok + "\n",
		"qp lone equals":   "Content-Transfer-Encoding: quoted-printable\n\n=",
		"qp high bytes":    "Content-Transfer-Encoding: quoted-printable\n\n\xff\xfe=\n=4\n",
		"unknown encoding": "Content-Transfer-Encoding: x-uuencode\n\nbegin 644 token\n",
	} {
		msg := mixed("", part)
		found, out, removed := robust(t, rm(), []byte(msg))
		if found.OK() || removed != 0 || string(out) != bodyOf(t, msg) {
			t.Errorf("%s: found %v, removed %d", name, found, removed)
		}
	}
	// Garbage after a valid start does not hide the token.
	part := "Content-Transfer-Encoding: base64\n\n" + b64Lines(FileContent("RMTOKEN", tok), 76, "\n") + "!!!!=====garbage\n"
	if found, _, _ := robust(t, rm(), []byte(mixed("", part))); found.Token != tok {
		t.Errorf("base64 with trailing garbage: Find = %q", found.Token)
	}
}

func TestTruncatedMessages(t *testing.T) {
	t.Parallel()
	tok := Generate()
	full := crlf(mixed("X-Other: x\n", textPart,
		"Content-Type: multipart/alternative; boundary=alt\n\n--alt\n"+textPart+"--alt\n"+
			"Content-Transfer-Encoding: base64\n\n"+b64Lines(FileContent("RMTOKEN", tok), 20, "\n")+"--alt--\n",
		textPart))
	within(t, func() {
		for n := 0; n <= len(full); n++ {
			msg := []byte(full[:n])
			found, err := rm().Find(bytes.NewReader(msg))
			if err != nil {
				t.Errorf("%d bytes: Find: %v", n, err)
				return
			}
			// A message cut inside the token file carries the start of
			// the token (the store will not know it), never anything else.
			if found.OK() && !strings.HasPrefix(tok, found.Token) {
				t.Errorf("%d bytes: Find = %q", n, found.Token)
			}
			ct, body, err := splitMessage(msg)
			if err != nil {
				t.Errorf("%d bytes: %v", n, err)
				return
			}
			var out bytes.Buffer
			first, removed, err := rm().StripParts(&out, ct, bytes.NewReader(body))
			if err != nil || out.Len() > len(body) || first != found.Token || (removed > 0) != found.OK() {
				t.Errorf("%d bytes: StripParts = %q, %d, %v, wrote %d of %d bytes", n, first, removed, err, out.Len(), len(body))
			}
		}
	})
	if found := find(t, rm(), full); found.Token != tok {
		t.Fatalf("the complete message: Find = %q", found.Token)
	}
}

// slowReader hands out one byte at a time, to cut lines and header reads
// at every possible place.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return s.r.Read(p)
}

func TestOneByteReads(t *testing.T) {
	t.Parallel()
	tok := Generate()
	msg := crlf(mixed("", textPart, tokenPart("RMTOKEN"+tok+"\n")))
	found, err := rm().Find(slowReader{strings.NewReader(msg)})
	if err != nil || found.Token != tok {
		t.Errorf("Find through one-byte reads = %q, %v", found.Token, err)
	}
	ct, body := split(t, []byte(msg))
	var out bytes.Buffer
	if _, n, err := rm().StripParts(&out, ct, slowReader{bytes.NewReader(body)}); err != nil || n != 1 {
		t.Errorf("StripParts through one-byte reads: %d, %v", n, err)
	}
}

type errAfter struct {
	r   io.Reader
	err error
}

func (e *errAfter) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

func TestReadErrorsAreReported(t *testing.T) {
	t.Parallel()
	boom := fmt.Errorf("connection reset")
	msg := mixed("", textPart, "Content-Type: text/plain\n\nno token here\n")
	ct, body := split(t, []byte(msg))
	// A cut-off body: the error is returned, not taken as the end.
	cut := body[:len(body)/2]
	if _, err := rm().InBody(ct, &errAfter{bytes.NewReader(cut), boom}); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("InBody: err = %v", err)
	}
	if _, _, err := rm().StripParts(io.Discard, ct, &errAfter{bytes.NewReader(cut), boom}); err == nil {
		t.Error("StripParts: read error not reported")
	}
	if _, err := rm().Find(&errAfter{strings.NewReader(msg[:len(msg)-30]), boom}); err == nil {
		t.Error("Find: read error not reported")
	}
}
