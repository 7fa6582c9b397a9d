package token

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzFind feeds whole messages to Find and to StripParts. Whatever the
// input: no panic; StripParts never writes more than it read; it removes
// what InBody finds (the same first token); and after it, InBody finds
// nothing more.
func FuzzFind(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "lego", "*.eml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("LEGO fixtures: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add([]byte(crlf(strings.ReplaceAll(string(data), "LEGOTOKEN", "RMTOKEN"))))
	}
	tok := "abcdefghijklmnopqrstuvwxyz234567"
	for _, s := range []string{
		mixed("X-Restricted-Token: "+tok+"\n", textPart),
		mixed("", textPart, tokenPart("RMTOKEN"+tok+"\n"), tokenPart("RMTOKEN"+tok+"x\n")),
		mixed("", "Content-Transfer-Encoding: quoted-printable\n\nRMTOKEN"+tok[:5]+"=\n"+tok[5:]+"\n"),
		mixed("", "Content-Type: message/rfc822\n\nContent-Type: multipart/mixed; boundary=i\n\n--i\n"+tokenPart("RMTOKEN"+tok+"\n")+"--i--\n"),
		deep(20, tok),
		"Content-Type: multipart/mixed; boundary=b\n\n--b\n" + tokenPart("RMTOKEN"+tok),
		"Content-Type: text/plain\n\nRMTOKEN" + tok + "\n",
		"Content-Type: multipart/mixed; boundary=b\r\rbody\r--b\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fd := rm()
		found, ferr := fd.Find(bytes.NewReader(msg))
		ct, body, err := splitMessage(msg)
		if err != nil {
			if ferr == nil {
				t.Fatalf("the header cannot be read (%v), but Find succeeded", err)
			}
			return
		}
		if ferr != nil {
			t.Fatalf("Find: %v", ferr)
		}
		inBody, err := fd.InBody(ct, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("InBody: %v", err)
		}
		if found.Carrier != CarrierHeader && found.Token != inBody {
			t.Fatalf("Find = %q, InBody = %q", found.Token, inBody)
		}
		var out bytes.Buffer
		first, removed, err := fd.StripParts(&out, ct, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("StripParts: %v", err)
		}
		if out.Len() > len(body) {
			t.Fatalf("StripParts wrote %d bytes from %d", out.Len(), len(body))
		}
		// Token parts inside a forwarded message are removed too, but are
		// never the message's token: first == "" with removed > 0.
		if first != inBody || (first != "" && removed == 0) {
			t.Fatalf("StripParts = %q, %d removed; InBody = %q", first, removed, inBody)
		}
		if removed == 0 && !bytes.Equal(out.Bytes(), body) {
			t.Fatalf("StripParts removed nothing but changed the body")
		}
		if boundary(ct) == "" {
			// A single part is never a carrier.
			if inBody != "" {
				t.Fatalf("token %q found in a single-part body", inBody)
			}
			return
		}
		if tok, err := fd.InBody(ct, bytes.NewReader(out.Bytes())); tok != "" || err != nil {
			t.Fatalf("InBody after StripParts = %q, %v", tok, err)
		}
	})
}
