package mailheader

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// read runs Read on msg and returns the header and what is left in the
// reader.
func read(t *testing.T, msg string) (textproto.Header, string, error) {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(msg))
	h, err := Read(br)
	rest, rerr := io.ReadAll(br)
	if rerr != nil {
		t.Fatalf("reading the rest: %v", rerr)
	}
	return h, string(rest), err
}

// rawFields returns the raw bytes of each field, top to bottom.
func rawFields(t *testing.T, h textproto.Header) []string {
	t.Helper()
	var out []string
	for fs := h.Fields(); fs.Next(); {
		raw, err := fs.Raw()
		if err != nil {
			t.Fatalf("Raw of %q: %v", fs.Key(), err)
		}
		out = append(out, string(raw))
	}
	return out
}

func TestRoundTripCRLF(t *testing.T) {
	t.Parallel()
	header := "Received: from mx.example.net (mx.example.net [192.0.2.1])\r\n" +
		"\tby mx.example.org (Postfix) with ESMTPS id 4ABC\r\n" +
		"\tfor <board@example.org>; Tue, 19 May 2015 14:10:13 +0300 (EEST)\r\n" +
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=sel;\r\n" +
		"        h=from:to:subject; bh=MTIz;\r\n" +
		"        b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR\r\n" +
		"From: \"Alice Example\" <alice@example.net>\r\n" +
		"To: board@example.org\r\n" +
		"Subject: =?UTF-8?Q?M=C3=B8te?= on\r\n" +
		" several lines\r\n" +
		"X-Spacey   :   value with trailing space   \r\n" +
		"x-lower-case: kept as written\r\n" +
		"Empty:\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n"
	body := "Hello\r\n\r\nFrom: not a header\r\n"
	h, rest, err := read(t, header+body)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(Bytes(h)); got != header {
		t.Errorf("header not reproduced:\ngot:\n%q\nwant:\n%q", got, header)
	}
	if rest != body {
		t.Errorf("reader left at %q, want the body %q", rest, body)
	}
	if got := h.Get("Subject"); got != "=?UTF-8?Q?M=C3=B8te?= on several lines" {
		t.Errorf("Subject = %q", got)
	}
	if got := h.Get("X-Spacey"); got != "value with trailing space" {
		t.Errorf("X-Spacey = %q", got)
	}
	if n := len(rawFields(t, h)); n != 9 {
		t.Errorf("%d fields, want 9", n)
	}
}

// splitFields splits a header (without its blank line) into its raw fields.
func splitFields(header string) []string {
	var fields []string
	for _, line := range strings.SplitAfter(header, "\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			fields[len(fields)-1] += line
			continue
		}
		fields = append(fields, line)
	}
	return fields
}

func TestLEGOFixturesKeepRawFields(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../token/testdata/lego/*.eml")
	if err != nil || len(files) != 6 {
		t.Fatalf("LEGO fixtures: %v, %v (want 6 files)", files, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		msg := string(data)
		end := strings.Index(msg, "\n\n")
		if end < 0 {
			t.Fatalf("%s: no blank line", file)
		}
		h, rest, err := read(t, msg)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		want := splitFields(msg[:end+1])
		got := rawFields(t, h)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: raw fields\ngot  %q\nwant %q", file, got, want)
		}
		if rest != msg[end+2:] {
			t.Errorf("%s: reader not left at the body", file)
		}
		if !strings.HasPrefix(h.Get("Content-Type"), "multipart/") {
			t.Errorf("%s: Content-Type = %q", file, h.Get("Content-Type"))
		}
	}
}

func TestMalformedLineEndsHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, msg string
		fields    []string
		rest      string
	}{
		{
			name:   "line without colon",
			msg:    "Subject: a\r\nThis is not a header\r\nTo: b@example.org\r\n\r\nbody\r\n",
			fields: []string{"Subject: a\r\n"},
			rest:   "This is not a header\r\nTo: b@example.org\r\n\r\nbody\r\n",
		},
		{
			name:   "colon first",
			msg:    "Subject: a\n: no name\n\nbody\n",
			fields: []string{"Subject: a\n"},
			rest:   ": no name\n\nbody\n",
		},
		{
			name:   "control character in the name",
			msg:    "Subject: a\nX-Bad\x01Name: v\n\nbody",
			fields: []string{"Subject: a\n"},
			rest:   "X-Bad\x01Name: v\n\nbody",
		},
		{
			name:   "mbox From_ line",
			msg:    "From alice@example.net Tue May 19 14:10:13 2015\nSubject: x\n\n",
			fields: nil,
			rest:   "From alice@example.net Tue May 19 14:10:13 2015\nSubject: x\n\n",
		},
		{
			name:   "continuation as first line",
			msg:    " folded\r\nSubject: x\r\n\r\nbody",
			fields: nil,
			rest:   " folded\r\nSubject: x\r\n\r\nbody",
		},
		{
			name:   "bare CR line",
			msg:    "Subject: a\r\n\rX: y\r\n\r\n",
			fields: []string{"Subject: a\r\n"},
			rest:   "\rX: y\r\n\r\n",
		},
		{
			name:   "empty header",
			msg:    "\r\nbody\r\n",
			fields: nil,
			rest:   "body\r\n",
		},
		{
			name:   "empty header LF",
			msg:    "\nbody\n",
			fields: nil,
			rest:   "body\n",
		},
		{
			name:   "space before colon",
			msg:    "Subject : spaced\n\nbody",
			fields: []string{"Subject : spaced\n"},
			rest:   "body",
		},
		{
			name:   "tab before colon",
			msg:    "Subject\t: tabbed\n\nbody",
			fields: []string{"Subject\t: tabbed\n"},
			rest:   "body",
		},
		{
			name:   "space inside the name",
			msg:    "Subject: a\nX Foo: bar\n\nbody",
			fields: []string{"Subject: a\n"},
			rest:   "X Foo: bar\n\nbody",
		},
		{
			name:   "empty message",
			msg:    "",
			fields: nil,
			rest:   "",
		},
	}
	for _, tt := range tests {
		h, rest, err := read(t, tt.msg)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := rawFields(t, h); strings.Join(got, "|") != strings.Join(tt.fields, "|") {
			t.Errorf("%s: fields %q, want %q", tt.name, got, tt.fields)
		}
		if rest != tt.rest {
			t.Errorf("%s: reader left at %q, want %q", tt.name, rest, tt.rest)
		}
	}
}

func TestNoBodyNoFinalNewline(t *testing.T) {
	t.Parallel()
	h, rest, err := read(t, "To: board@example.org\r\nSubject: hi")
	if err != nil {
		t.Fatal(err)
	}
	if rest != "" {
		t.Errorf("rest = %q, want nothing", rest)
	}
	if h.Get("Subject") != "hi" || h.Get("To") != "board@example.org" {
		t.Errorf("fields: %v", h.Map())
	}
	// The field is completed with a line ending so that it can be written
	// in front of other fields or a body.
	if got := string(Bytes(h)); got != "To: board@example.org\r\nSubject: hi\r\n\r\n" {
		t.Errorf("written as %q", got)
	}
	h, rest, err = read(t, "Subject: folded\r\n continued")
	if err != nil || rest != "" || h.Get("Subject") != "folded continued" {
		t.Errorf("folded last field: %q, rest %q, %v", h.Get("Subject"), rest, err)
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	long := "X-Long: " + strings.Repeat("a", MaxBytes) + "\r\n\r\nbody"
	if _, _, err := read(t, long); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one long field: err = %v, want ErrTooLarge", err)
	}
	var b strings.Builder
	for b.Len() <= MaxBytes {
		b.WriteString("X-Many: a field among many, none of them long\r\n")
	}
	b.WriteString("\r\nbody")
	if _, _, err := read(t, b.String()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("many fields: err = %v, want ErrTooLarge", err)
	}
	var folded strings.Builder
	folded.WriteString("X-Folded: start\r\n")
	for folded.Len() <= MaxBytes {
		folded.WriteString(" continuation line of a field that never ends\r\n")
	}
	if _, _, err := read(t, folded.String()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one field folded many times: err = %v, want ErrTooLarge", err)
	}
	// Just below the limit is fine, and the body is not counted.
	field := "X-Big: " + strings.Repeat("b", MaxBytes-100) + "\r\n"
	h, rest, err := read(t, field+"\r\n"+strings.Repeat("body", MaxBytes))
	if err != nil || len(rest) != 4*MaxBytes || len(h.Get("X-Big")) != MaxBytes-100 {
		t.Errorf("header below the limit: err %v, rest %d bytes", err, len(rest))
	}
}

// errReader returns data, then err.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	br := bufio.NewReader(&errReader{data: []byte("Subject: a\r\nTo: b"), err: boom})
	if _, err := Read(br); !errors.Is(err, boom) {
		t.Errorf("err = %v, want the reader's error", err)
	}
}

func TestBytes(t *testing.T) {
	t.Parallel()
	var h textproto.Header
	h.Add("Subject", "hello")
	h.Add("From", "a@example.org")
	if got := string(Bytes(h)); got != "From: a@example.org\r\nSubject: hello\r\n\r\n" {
		t.Errorf("Bytes = %q", got)
	}
	if !bytes.Equal(Bytes(textproto.Header{}), []byte("\r\n")) {
		t.Error("empty header is not a blank line")
	}
}

// Bytes writes h as it would be sent.
func Bytes(h textproto.Header) []byte {
	var b bytes.Buffer
	_ = textproto.WriteHeader(&b, h)
	return b.Bytes()
}
