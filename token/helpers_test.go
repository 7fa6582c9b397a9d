package token

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/mailheader"
)

// rm is the finder of a default configuration; lego reads LEGO's files.
func rm() Finder   { return Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"} }
func lego() Finder { return Finder{Prefix: "LEGOTOKEN", Header: "X-Restricted-Token"} }

// crlf turns a message written with LF line endings into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// endings runs fn for both line endings of an LF-written message.
func endings(t *testing.T, msg string, fn func(t *testing.T, msg string)) {
	t.Helper()
	t.Run("LF", func(t *testing.T) { t.Parallel(); fn(t, msg) })
	t.Run("CRLF", func(t *testing.T) { t.Parallel(); fn(t, crlf(msg)) })
}

// fixture reads one of LEGO's test messages from testdata/lego.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "lego", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// splitMessage returns the content type and the body of a message.
func splitMessage(msg []byte) (contentType string, body []byte, err error) {
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := mailheader.Read(br)
	if err != nil {
		return "", nil, err
	}
	var rest bytes.Buffer
	if _, err := rest.ReadFrom(br); err != nil {
		return "", nil, err
	}
	return h.Get("Content-Type"), rest.Bytes(), nil
}

// split is splitMessage for the test's goroutine.
func split(t testing.TB, msg []byte) (contentType string, body []byte) {
	t.Helper()
	ct, body, err := splitMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	return ct, body
}

// find runs Finder.Find and, independently, Finder.InBody on the body, and
// checks that they agree when the header holds no token.
func find(t testing.TB, f Finder, msg string) Found {
	t.Helper()
	var got Found
	within(t, func() {
		var err error
		got, err = f.Find(strings.NewReader(msg))
		if err != nil {
			t.Errorf("Find: %v", err)
		}
		ct, body, err := splitMessage([]byte(msg))
		if err != nil {
			t.Errorf("reading the header: %v", err)
			return
		}
		tok, err := f.InBody(ct, bytes.NewReader(body))
		if err != nil {
			t.Errorf("InBody: %v", err)
		}
		if got.Carrier != CarrierHeader && tok != got.Token {
			t.Errorf("Find = %q but InBody = %q", got.Token, tok)
		}
	})
	return got
}

// strip runs StripParts on the body of msg and returns the stripped body.
func strip(t testing.TB, f Finder, msg string) (body, first string, removed int) {
	t.Helper()
	within(t, func() {
		ct, in, err := splitMessage([]byte(msg))
		if err != nil {
			t.Errorf("reading the header: %v", err)
			return
		}
		var out bytes.Buffer
		first, removed, err = f.StripParts(&out, ct, bytes.NewReader(in))
		if err != nil {
			t.Errorf("StripParts: %v", err)
		}
		if out.Len() > len(in) {
			t.Errorf("StripParts wrote %d bytes from %d", out.Len(), len(in))
		}
		body = out.String()
	})
	return body, first, removed
}

// bodyOf returns the body of msg (after the blank line that ends its header).
func bodyOf(t testing.TB, msg string) string {
	t.Helper()
	_, body := split(t, []byte(msg))
	return string(body)
}

// within runs fn and fails the test if it does not return in time: the
// walker must never hang, whatever the input. fn runs on another goroutine,
// so it reports with Errorf, never Fatal.
func within(t testing.TB, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("did not return within 2 minutes")
	}
}

// b64Lines encodes data in base64 lines of width characters.
func b64Lines(data []byte, width int, nl string) string {
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(enc) > width {
		b.WriteString(enc[:width] + nl)
		enc = enc[width:]
	}
	b.WriteString(enc + nl)
	return b.String()
}

// bigMessage builds a multipart message of about size bytes: one large
// base64 attachment, then the token part at the very end.
func bigMessage(size int, tok string) []byte {
	var b bytes.Buffer
	b.Grow(size + 1024)
	b.WriteString("From: alice@example.net\r\nTo: board@example.org\r\nSubject: big\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"big-boundary\"\r\n\r\n" +
		"--big-boundary\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n" +
		"--big-boundary\r\nContent-Type: application/octet-stream; name=data.bin\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	line := []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("restricted"), 6)[:57]) + "\r\n")
	for b.Len() < size-512 {
		b.Write(line)
	}
	b.WriteString("--big-boundary\r\nContent-Type: text/plain; name=token\r\n" +
		"Content-Disposition: attachment; filename=token\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b.WriteString(b64Lines(FileContent("RMTOKEN", tok), 76, "\r\n"))
	b.WriteString("--big-boundary--\r\n")
	return b.Bytes()
}
