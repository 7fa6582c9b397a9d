package mailheader

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadHeader checks that Read never panics and loses nothing: the raw
// fields followed by what is left in the reader are the input, except for
// the blank line that ends the header (consumed) and the line ending added
// to a last field that had none.
func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{
		"Subject: a\r\nTo: b@example.org\r\n\r\nbody\r\n",
		"Subject: a\n folded\n\nbody\n",
		" continuation first\r\n\r\n",
		"Subject: no newline",
		"Subject: a\r\nnot a field\r\n\r\n",
		"\r\n",
		"X: \r\rY: z\r\n\r\n",
		"Key : v\n\tcont\n \n\nbody",
	} {
		f.Add([]byte(s))
	}
	if files, _ := filepath.Glob("../token/testdata/lego/*.eml"); len(files) > 0 {
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		h, err := Read(br)
		if err != nil {
			// Only a header above MaxBytes fails on a reader without errors.
			if len(in) <= MaxBytes {
				t.Fatalf("Read of %d bytes: %v", len(in), err)
			}
			return
		}
		rest, _ := io.ReadAll(br)
		var raw []byte
		for fs := h.Fields(); fs.Next(); {
			b, err := fs.Raw()
			if err != nil {
				t.Fatalf("Raw of %q: %v", fs.Key(), err)
			}
			if bytes.IndexByte(b, ':') < 0 {
				t.Fatalf("field without a colon: %q", b)
			}
			raw = append(raw, b...)
		}
		if !bytes.HasSuffix(in, rest) {
			t.Fatalf("rest %q is not the end of the input", rest)
		}
		consumed := in[:len(in)-len(rest)]
		switch {
		case bytes.Equal(consumed, raw),
			bytes.Equal(consumed, append(raw[:len(raw):len(raw)], '\n')),
			bytes.Equal(consumed, append(raw[:len(raw):len(raw)], '\r', '\n')):
		case len(rest) == 0 && bytes.HasSuffix(raw, []byte("\r\n")) && bytes.Equal(consumed, raw[:len(raw)-2]):
			// The last field of a message without a final line ending.
		default:
			t.Fatalf("consumed %q, but the fields are %q", consumed, raw)
		}
	})
}
