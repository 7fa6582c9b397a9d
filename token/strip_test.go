package token

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestStripPartsExact checks StripParts byte for byte: the output is the
// input without the token parts, each removed from its delimiter line up to
// (not including) the next delimiter line; preamble, epilogue, nested
// parts, folding and line endings stay as they were.
func TestStripPartsExact(t *testing.T) {
	t.Parallel()
	tok1, tok2 := Generate(), Generate()
	type seg struct {
		text  string
		token bool // removed by StripParts
	}
	segs := []seg{
		{"This is the preamble.\n  It has two lines.\n", false},
		{"--outer\nContent-Type: text/plain;\n charset=\"utf-8\"\n\nHello, board.\n\n-- \nAlice\n", false},
		{"--outer\nContent-Type: multipart/alternative; boundary=\"inner\"\n\ninner preamble\n", false},
		{"--inner\nContent-Type: text/plain\n\nalternative text\n", false},
		{"--inner\nContent-Type: application/octet-stream; name=token\nContent-Transfer-Encoding: base64\n\n" +
			b64Lines(FileContent("RMTOKEN", tok1), 12, "\n") + "\n", true},
		{"--inner\nContent-Type: text/html\n\n<p>html</p>\n", false},
		{"--inner--\ninner epilogue\n", false},
		{"--outer\nContent-Type: text/plain; name=\"token.txt\"\nContent-Disposition: attachment; filename=\"token.txt\"\n\n" +
			"RMTOKEN" + tok2 + "\n", true},
		{"--outer\nContent-Type: text/plain; name=notes.txt\n\nRMTOKEN followed by a space is no token file.\n", false},
		{"--outer--\nThe epilogue.\n", false},
	}
	var in, want strings.Builder
	in.WriteString("From: alice@example.net\nContent-Type: multipart/mixed; boundary=outer\n\n")
	want.WriteString("From: alice@example.net\nContent-Type: multipart/mixed; boundary=outer\n\n")
	for _, s := range segs {
		in.WriteString(s.text)
		if !s.token {
			want.WriteString(s.text)
		}
	}
	endings(t, in.String(), func(t *testing.T, msg string) {
		wantBody := bodyOf(t, want.String())
		if strings.HasPrefix(msg, "From: alice@example.net\r\n") {
			wantBody = crlf(wantBody)
		}
		out, first, removed := strip(t, rm(), msg)
		if out != wantBody {
			t.Errorf("StripParts output:\n%s\nwant:\n%s", out, wantBody)
		}
		if first != tok1 || removed != 2 {
			t.Errorf("StripParts = %q, %d; want %q, 2", first, removed, tok1)
		}
		// Nothing is left to find, by any path.
		if got := find(t, rm(), strings.Replace(msg, bodyOf(t, msg), out, 1)); got.OK() {
			t.Errorf("found %v after stripping", got)
		}
		ct, _ := split(t, []byte(msg))
		if tok, err := rm().InBody(ct, strings.NewReader(out)); tok != "" || err != nil {
			t.Errorf("InBody after stripping = %q, %v", tok, err)
		}
	})
}

func TestStripPartsLEGO(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"valid.eml", "clean_headers.eml", "invalid_token.eml"} {
		msg := string(fixture(t, name))
		start := strings.Index(msg, "--001a1141b90e89018f054eb72091\nContent-Type: text/plain; charset=US-ASCII; name=\"token.txt\"")
		end := strings.LastIndex(msg, "--001a1141b90e89018f054eb72091--")
		if start < 0 || end < start {
			t.Fatalf("%s: token part not where expected", name)
		}
		wantBody := bodyOf(t, msg[:start]+msg[end:])
		out, first, removed := strip(t, lego(), msg)
		if out != wantBody || removed != 1 || first == "" {
			t.Errorf("%s: StripParts = %q, %d:\n%s\nwant:\n%s", name, first, removed, out, wantBody)
		}
	}
	for _, name := range []string{"no_token.eml", "no_message_id.eml", "invalid_recipient.eml"} {
		msg := string(fixture(t, name))
		out, first, removed := strip(t, lego(), msg)
		if out != bodyOf(t, msg) || removed != 0 || first != "" {
			t.Errorf("%s: StripParts changed a message without a token (%q, %d)", name, first, removed)
		}
	}
}

func TestStripPartsRemovesAll(t *testing.T) {
	t.Parallel()
	var parts []string
	var toks []string
	for i := 0; i < 5; i++ {
		tok := Generate()
		toks = append(toks, tok)
		parts = append(parts, textPart, tokenPart("RMTOKEN"+tok+"\n"))
	}
	// One in a nested multipart too.
	nested := Generate()
	parts = append(parts, "Content-Type: multipart/mixed; boundary=n\n\n--n\n"+tokenPart("RMTOKEN"+nested+"\n")+"--n\n"+textPart+"--n--\n")
	msg := mixed("", parts...)
	endings(t, msg, func(t *testing.T, msg string) {
		out, first, removed := strip(t, rm(), msg)
		if first != toks[0] || removed != 6 {
			t.Errorf("StripParts = %q, %d; want the first token, 6", first, removed)
		}
		for _, tok := range append(toks, nested) {
			if strings.Contains(out, tok) {
				t.Errorf("token %s left in the output", tok)
			}
		}
		if n := strings.Count(out, "Hello, board."); n != 6 {
			t.Errorf("%d text parts left, want 6", n)
		}
		ct, _ := split(t, []byte(msg))
		if tok, _ := rm().InBody(ct, strings.NewReader(out)); tok != "" {
			t.Errorf("InBody after stripping = %q", tok)
		}
	})
}

func TestStripPartsLongTokenPart(t *testing.T) {
	t.Parallel()
	// A token part longer than what is examined is dropped whole.
	tok := Generate()
	content := "RMTOKEN" + tok + "\n" + strings.Repeat("padding line of a long token file\n", 2000)
	msg := mixed("", textPart, tokenPart(content), textPart)
	endings(t, msg, func(t *testing.T, msg string) {
		out, first, removed := strip(t, rm(), msg)
		want := bodyOf(t, mixed("", textPart, textPart))
		if strings.Contains(msg, "\r\n") {
			want = crlf(want)
		}
		if out != want || first != tok || removed != 1 {
			t.Errorf("StripParts = %q, %d; output %d bytes, want %d", first, removed, len(out), len(want))
		}
	})
}

type failingWriter struct{ after int }

var errWrite = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after < len(p) {
		return 0, errWrite
	}
	w.after -= len(p)
	return len(p), nil
}

func TestStripPartsWriteError(t *testing.T) {
	t.Parallel()
	msg := mixed("", textPart, tokenPart("RMTOKEN"+Generate()+"\n"), textPart)
	ct, body := split(t, []byte(msg))
	for _, after := range []int{0, 10, 60, 100} {
		_, _, err := rm().StripParts(&failingWriter{after: after}, ct, bytes.NewReader(body))
		if !errors.Is(err, errWrite) {
			t.Errorf("write failing after %d bytes: err = %v", after, err)
		}
	}
}
