package token

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// recorder is a PartWriter that notes what it is told, in order, and
// keeps every byte.
type recorder struct {
	all    bytes.Buffer
	events []string
	open   bool
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.open && bytes.Contains(p, []byte("secret text")) {
		r.events = append(r.events, "content outside BeginContent")
	}
	return r.all.Write(p)
}

func (r *recorder) WriteHeader(b []byte) error {
	r.events = append(r.events, fmt.Sprintf("header %q", strings.SplitN(string(b), "\n", 2)[0]))
	r.all.Write(b)
	return nil
}

func (r *recorder) BeginContent(h textproto.Header) error {
	if r.open {
		r.events = append(r.events, "BeginContent twice")
	}
	r.open = true
	r.events = append(r.events, "begin "+h.Get("Content-Type"))
	return nil
}

func (r *recorder) EndContent() error {
	if !r.open {
		r.events = append(r.events, "EndContent without BeginContent")
	}
	r.open = false
	r.events = append(r.events, "end")
	return nil
}

// TestPartWriterIsTold: StripParts writes the same bytes to a PartWriter as
// to a plain writer, passes each header block through WriteHeader, and
// wraps each kept leaf's content (a forwarded message's single-part body
// included) in BeginContent and EndContent — never a token part's.
func TestPartWriterIsTold(t *testing.T) {
	t.Parallel()
	tok := Generate()
	body := "preamble\r\n--o\r\nContent-Type: text/plain\r\n\r\nsecret text 1\r\n" +
		"--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\nContent-Type: text/html\r\n\r\n<p>secret text 2</p>\r\n--i--\r\n" +
		"--o\r\nContent-Type: text/plain; name=token.txt\r\n\r\nRMTOKEN" + tok + "\r\n" +
		"--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: fwd\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsecret text 3\r\n" +
		"--o\r\nContent-Type: text/plain\r\nno blank line, then the end"
	var plain bytes.Buffer
	if _, _, err := rm().StripParts(&plain, "multipart/mixed; boundary=o", strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	first, removed, err := rm().StripParts(r, "multipart/mixed; boundary=o", strings.NewReader(body))
	if err != nil || first != tok || removed != 1 {
		t.Fatalf("StripParts = %q, %d, %v", first, removed, err)
	}
	if !bytes.Equal(r.all.Bytes(), plain.Bytes()) {
		t.Errorf("a PartWriter got other bytes:\n%q\nwant\n%q", r.all.Bytes(), plain.Bytes())
	}
	want := []string{
		`header "Content-Type: text/plain\r"`, "begin text/plain", "end",
		`header "Content-Type: multipart/alternative; boundary=i\r"`,
		`header "Content-Type: text/html\r"`, "begin text/html", "end",
		`header "Content-Type: message/rfc822\r"`, `header "Subject: fwd\r"`, "begin text/plain; charset=utf-8", "end",
		`header "Content-Type: text/plain\r"`,
	}
	if strings.Join(r.events, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(r.events, "\n"), strings.Join(want, "\n"))
	}
}

// TestStripForwardedMessageBody: a message whose body is a forwarded
// message loses the token files of that message, as a forwarded message in
// a part does; finding never takes them for the message's token.
func TestStripForwardedMessageBody(t *testing.T) {
	t.Parallel()
	tok := Generate()
	body := "Subject: fwd\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
		"--b\r\nContent-Type: text/plain; name=token.txt\r\n\r\nRMTOKEN" + tok + "\r\n--b--\r\n"
	var out bytes.Buffer
	first, removed, err := rm().StripParts(&out, "message/rfc822", strings.NewReader(body))
	if err != nil || removed != 1 || first != "" {
		t.Errorf("StripParts = %q, %d, %v; want the forwarded token part removed, not taken", first, removed, err)
	}
	if strings.Contains(out.String(), tok) || !strings.Contains(out.String(), "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n") {
		t.Errorf("output:\n%s", out.String())
	}
	if got, err := rm().InBody("message/rfc822", strings.NewReader(body)); got != "" || err != nil {
		t.Errorf("InBody = %q, %v: a forwarded message's token is not this message's", got, err)
	}
	if !OneLeaf("text/plain") || OneLeaf("message/rfc822") || OneLeaf("multipart/mixed; boundary=b") || !OneLeaf("multipart/mixed") {
		t.Errorf("OneLeaf is wrong")
	}
}
