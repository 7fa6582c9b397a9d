package token

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"

	"github.com/restrictedmail/restrictedmail/address"
)

func TestLEGOFixtures(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"valid.eml":             "test_token",
		"clean_headers.eml":     "test_token",
		"invalid_token.eml":     "INVALID",
		"no_token.eml":          "",
		"no_message_id.eml":     "",
		"invalid_recipient.eml": "",
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			msg := fixture(t, name)
			got := find(t, lego(), string(msg))
			if got.Token != want {
				t.Errorf("Find = %q, want %q", got.Token, want)
			}
			wantCarrier := CarrierPart
			if want == "" {
				wantCarrier = CarrierNone
			}
			if got.Carrier != wantCarrier {
				t.Errorf("carrier = %v, want %v", got.Carrier, wantCarrier)
			}
			// With another prefix, LEGO's files carry nothing.
			if got := find(t, rm(), string(msg)); got.OK() {
				t.Errorf("with prefix RMTOKEN: found %v", got)
			}
		})
	}
}

// mixed wraps parts in a multipart/mixed message with boundary "outer".
func mixed(extraHeader string, parts ...string) string {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.net>\nTo: board@example.org\nSubject: test\n" + extraHeader +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\nThis is a multi-part message in MIME format.\n")
	for _, p := range parts {
		b.WriteString("--outer\n" + p)
	}
	b.WriteString("--outer--\n")
	return b.String()
}

const textPart = "Content-Type: text/plain; charset=utf-8\n\nHello, board.\n\n"

func tokenPart(content string) string {
	return "Content-Type: text/plain; name=token\nContent-Disposition: attachment; filename=token\n\n" + content
}

func TestHeaderCarrier(t *testing.T) {
	t.Parallel()
	tok := Generate()
	tests := []struct {
		name, header, want string
	}{
		{"plain", "X-Restricted-Token: " + tok + "\n", tok},
		{"lower-case name", "x-restricted-token: " + tok + "\n", tok},
		{"folded", "X-Restricted-Token:\n  " + tok + "\n", tok},
		{"trailing text", "X-Restricted-Token: " + tok + " (from the web app)\n", tok},
		{"upper-case token", "X-Restricted-Token: " + strings.ToUpper(tok) + "\n", strings.ToUpper(tok)},
		{"empty first field", "X-Restricted-Token:\nX-Restricted-Token: " + tok + "\n", tok},
		{"too long", "X-Restricted-Token: " + strings.Repeat("a", MaxLength+1) + "\n", ""},
		{"not a token", "X-Restricted-Token: <" + tok + ">\n", ""},
		{"other header", "X-Token: " + tok + "\n", ""},
	}
	for _, tt := range tests {
		msg := mixed(tt.header, textPart)
		endings(t, msg, func(t *testing.T, msg string) {
			got := find(t, rm(), msg)
			if got.Token != tt.want {
				t.Errorf("%s: Find = %q, want %q", tt.name, got.Token, tt.want)
			}
			if tt.want != "" && got.Carrier != CarrierHeader {
				t.Errorf("%s: carrier %v, want header", tt.name, got.Carrier)
			}
		})
	}
	// A configured header name other than the default.
	f := Finder{Prefix: "RMTOKEN", Header: "X-Posting-Key"}
	if got := find(t, f, mixed("X-Posting-Key: "+tok+"\n", textPart)); got.Token != tok {
		t.Errorf("custom header: Find = %v", got)
	}
	if got := find(t, f, mixed("X-Restricted-Token: "+tok+"\n", textPart)); got.OK() {
		t.Errorf("default header with a custom name configured: Find = %v", got)
	}
	// A top-level single part can carry the header.
	single := "X-Restricted-Token: " + tok + "\nContent-Type: text/plain\n\nhello\n"
	if got := find(t, rm(), single); got.Token != tok || got.Carrier != CarrierHeader {
		t.Errorf("single part with header: Find = %v", got)
	}
}

func TestInHeaderField(t *testing.T) {
	t.Parallel()
	f := rm()
	if got := f.InHeaderField("x-RESTRICTED-token", "  abc123  "); got != "abc123" {
		t.Errorf("InHeaderField = %q", got)
	}
	if got := f.InHeaderField("Subject", "abc123"); got != "" {
		t.Errorf("InHeaderField(Subject) = %q", got)
	}
	if got := f.InHeaderField("X-Restricted-Token", ""); got != "" {
		t.Errorf("InHeaderField(empty) = %q", got)
	}
	var h textproto.Header
	h.Add("X-Restricted-Token", "second")
	h.Add("X-Restricted-Token", "first")
	if got := f.InHeader(&h); got != "first" {
		t.Errorf("InHeader = %q, want the first field's token", got)
	}
}

func TestHeaderWinsOverPart(t *testing.T) {
	t.Parallel()
	hdr, part := Generate(), Generate()
	msg := mixed("X-Restricted-Token: "+hdr+"\n", textPart, tokenPart("RMTOKEN"+part+"\n"))
	endings(t, msg, func(t *testing.T, msg string) {
		got := find(t, rm(), msg)
		if got.Token != hdr || got.Carrier != CarrierHeader {
			t.Errorf("Find = %q in %v, want the header's token", got.Token, got.Carrier)
		}
	})
}

func TestSubaddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rcpt, delim, base, tok string
	}{
		{"board+abc123@example.org", "+", "board@example.org", "abc123"},
		{"Board+ABC123@Example.org", "+", "Board@example.org", "ABC123"},
		{"board+test_token@example.org", "+", "board@example.org", "test_token"},
		{"board+a.b@example.org", "+", "board@example.org", ""},
		{"board+a+b@example.org", "+", "board@example.org", ""},
		{"board+@example.org", "+", "board@example.org", ""},
		{"board@example.org", "+", "board@example.org", ""},
		{"board+abc@example.org", "", "board+abc@example.org", ""},
		{"board-abc@example.org", "-", "board@example.org", "abc"},
	}
	for _, tt := range tests {
		base, tok := Subaddress(address.MustParse(tt.rcpt), tt.delim)
		if base.String() != tt.base || tok != tt.tok {
			t.Errorf("Subaddress(%q, %q) = %q, %q; want %q, %q", tt.rcpt, tt.delim, base, tok, tt.base, tt.tok)
		}
	}
	// Parse refuses such a local part, but Subaddress must not rely on it.
	long := address.Address{Local: "board+" + strings.Repeat("a", MaxLength+1), Domain: "example.org"}
	if base, tok := Subaddress(long, "+"); base.Local != "board" || tok != "" {
		t.Errorf("Subaddress of a %d-character extension = %q, %q", MaxLength+1, base, tok)
	}
}

func TestNestedMultiparts(t *testing.T) {
	t.Parallel()
	tok := Generate()
	msg := "Content-Type: multipart/mixed; boundary=L1\n\n" +
		"--L1\n" + textPart +
		"--L1\nContent-Type: multipart/related; boundary=\"L2\"\n\n" +
		"--L2\nContent-Type: multipart/alternative; boundary=L3\n\n" +
		"--L3\nContent-Type: text/plain\n\nplain\n" +
		"--L3\nContent-Type: multipart/mixed; boundary=L4\n\n" +
		"--L4\nContent-Type: text/html\n\n<p>html</p>\n" +
		"--L4\n" + tokenPart("RMTOKEN"+tok+"\n") +
		"--L4--\n" +
		"--L3--\n" +
		"--L2--\n" +
		"--L1--\n"
	endings(t, msg, func(t *testing.T, msg string) {
		if got := find(t, rm(), msg); got.Token != tok || got.Carrier != CarrierPart {
			t.Errorf("Find = %v %q, want the token 4 levels down", got, got.Token)
		}
	})
}

func TestQuotedPrintable(t *testing.T) {
	t.Parallel()
	tok := Generate()
	tests := map[string]string{
		"plain":                        "RMTOKEN" + tok + "\n",
		"soft break inside the token":  "RMTOKEN" + tok[:10] + "=\n" + tok[10:] + "\n",
		"soft break inside the prefix": "RM=\nTOKEN" + tok + "=\n",
		"encoded characters":           "=52=4D=54OKEN" + tok[:3] + "=" + fmt.Sprintf("%02X", tok[3]) + tok[4:] + "=0A",
		"broken escape after it":       "RMTOKEN" + tok + "\n=ZZ broken\n",
	}
	for name, content := range tests {
		part := "Content-Type: text/plain; name=token\nContent-Transfer-Encoding: Quoted-Printable\n\n" + content
		msg := mixed("", textPart, part)
		endings(t, msg, func(t *testing.T, msg string) {
			if got := find(t, rm(), msg); got.Token != tok {
				t.Errorf("%s: Find = %q, want %q", name, got.Token, tok)
			}
		})
	}
}

func TestBase64(t *testing.T) {
	t.Parallel()
	tok := Generate()
	file := FileContent("RMTOKEN", tok)
	for _, width := range []int{76, 4, 7, 1} {
		part := "Content-Type: application/octet-stream\nContent-Transfer-Encoding: BASE64\n\n" + b64Lines(file, width, "\n")
		msg := mixed("", textPart, part)
		endings(t, msg, func(t *testing.T, msg string) {
			if got := find(t, rm(), msg); got.Token != tok {
				t.Errorf("width %d: Find = %q, want %q", width, got.Token, tok)
			}
		})
	}
	// Without padding and with white space in the lines.
	enc := base64.RawStdEncoding.EncodeToString(file)
	part := "Content-Transfer-Encoding: base64\n\n" + enc[:9] + " \t" + enc[9:20] + "\n  " + enc[20:] + "\n"
	if got := find(t, rm(), mixed("", part)); got.Token != tok {
		t.Errorf("unpadded base64 with spaces: Find = %q", got.Token)
	}
	// Not decoded, base64 does not start with the prefix.
	part = "Content-Type: text/plain\n\n" + b64Lines(file, 76, "\n")
	if got := find(t, rm(), mixed("", part)); got.OK() {
		t.Errorf("base64 content without Content-Transfer-Encoding: found %v", got)
	}
}

func TestUTF8BOM(t *testing.T) {
	t.Parallel()
	tok := Generate()
	bom := "\xEF\xBB\xBF"
	for name, part := range map[string]string{
		"8bit":   "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + bom + "RMTOKEN" + tok + "\n",
		"base64": "Content-Transfer-Encoding: base64\n\n" + b64Lines([]byte(bom+"RMTOKEN"+tok+"\n"), 76, "\n"),
		"qp":     "Content-Transfer-Encoding: quoted-printable\n\n=EF=BB=BFRMTOKEN" + tok + "\n",
	} {
		endings(t, mixed("", textPart, part), func(t *testing.T, msg string) {
			if got := find(t, rm(), msg); got.Token != tok {
				t.Errorf("%s: Find = %q, want %q", name, got.Token, tok)
			}
		})
	}
	// Only one BOM, and only at the start.
	part := "Content-Type: text/plain\n\n" + bom + bom + "RMTOKEN" + tok + "\n"
	if got := find(t, rm(), mixed("", part)); got.OK() {
		t.Errorf("two BOMs: found %v", got)
	}
}

func TestTokenAtEndOf25MB(t *testing.T) {
	t.Parallel()
	tok := Generate()
	msg := bigMessage(25<<20, tok)
	if len(msg) < 25<<20-1024 {
		t.Fatalf("message is %d bytes", len(msg))
	}
	var got Found
	within(t, func() {
		var err error
		got, err = rm().Find(bytes.NewReader(msg))
		if err != nil {
			t.Errorf("Find: %v", err)
		}
	})
	if got.Token != tok || got.Carrier != CarrierPart {
		t.Errorf("Find = %q in %v, want the token of the last part", got.Token, got.Carrier)
	}
	ct, body := split(t, msg)
	var out bytes.Buffer
	first, removed, err := rm().StripParts(&out, ct, bytes.NewReader(body))
	if err != nil || first != tok || removed != 1 {
		t.Fatalf("StripParts = %q, %d, %v", first, removed, err)
	}
	i := bytes.LastIndex(body, []byte("--big-boundary\r\nContent-Type: text/plain; name=token"))
	want := string(body[:i]) + "--big-boundary--\r\n"
	if out.String() != want {
		t.Errorf("StripParts output differs from the body without its last part (%d vs %d bytes)", out.Len(), len(want))
	}
}

func TestFirstTokenPartWins(t *testing.T) {
	t.Parallel()
	first, second := Generate(), Generate()
	msg := mixed("", textPart, tokenPart("RMTOKEN"+first+"\n"), tokenPart("RMTOKEN"+second+"\n"))
	endings(t, msg, func(t *testing.T, msg string) {
		if got := find(t, rm(), msg); got.Token != first {
			t.Errorf("Find = %q, want the first part's token", got.Token)
		}
		_, got, removed := strip(t, rm(), msg)
		if got != first || removed != 2 {
			t.Errorf("StripParts = %q, %d removed; want the first token, 2", got, removed)
		}
	})
}

func TestSinglePartIsNoCarrier(t *testing.T) {
	t.Parallel()
	tok := Generate()
	for name, msg := range map[string]string{
		"text/plain":      "Content-Type: text/plain\n\nRMTOKEN" + tok + "\n",
		"no content type": "Subject: x\n\nRMTOKEN" + tok + "\n",
		"base64 single":   "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n" + b64Lines(FileContent("RMTOKEN", tok), 76, "\n"),
		// A multipart type without a boundary cannot be split into parts.
		"multipart without boundary": "Content-Type: multipart/mixed\n\n--outer\n" + tokenPart("RMTOKEN"+tok+"\n") + "--outer--\n",
	} {
		endings(t, msg, func(t *testing.T, msg string) {
			if got := find(t, rm(), msg); got.OK() {
				t.Errorf("%s: found %v", name, got)
			}
			out, _, removed := strip(t, rm(), msg)
			if removed != 0 || out != bodyOf(t, msg) {
				t.Errorf("%s: StripParts changed the body (%d removed)", name, removed)
			}
		})
	}
}

func TestForwardedMessageIsNoCarrier(t *testing.T) {
	t.Parallel()
	tok := Generate()
	forwarded := "Content-Type: message/rfc822\n\n" +
		"From: bob@example.com\nSubject: the original\nContent-Type: multipart/mixed; boundary=inner\n\n" +
		"--inner\n" + textPart + "--inner\n" + tokenPart("RMTOKEN"+tok+"\n") + "--inner--\n"
	msg := mixed("", textPart, forwarded)
	endings(t, msg, func(t *testing.T, msg string) {
		if got := find(t, rm(), msg); got.OK() {
			t.Errorf("token inside a forwarded message was found: %v", got)
		}
		// Stripping removes the forwarded token file all the same (a copy
		// carries nobody's token), and nothing else of the forwarded
		// message; it is still not the message's token.
		out, first, removed := strip(t, rm(), msg)
		if removed != 1 || first != "" || strings.Contains(out, tok) {
			t.Errorf("StripParts: %d removed, first %q; want the forwarded token part removed, not as the message's token", removed, first)
		}
		part := "--inner\n" + tokenPart("RMTOKEN"+tok+"\n")
		if strings.Contains(msg, "\r\n") {
			part = crlf(part)
		}
		want := strings.Replace(bodyOf(t, msg), part, "", 1)
		if out != want {
			t.Errorf("StripParts changed more than the forwarded token part:\n got %q\nwant %q", out, want)
		}
	})
	// A token file of this message after the forwarded one still counts.
	own := Generate()
	msg = mixed("", forwarded, tokenPart("RMTOKEN"+own+"\n"))
	if got := find(t, rm(), msg); got.Token != own {
		t.Errorf("Find = %q, want the message's own token", got.Token)
	}
	// So does message/global.
	global := strings.Replace(forwarded, "message/rfc822", "message/global", 1)
	if got := find(t, rm(), mixed("", global)); got.OK() {
		t.Errorf("token inside message/global was found: %v", got)
	}
}

func TestPrefixMustStartThePart(t *testing.T) {
	t.Parallel()
	tok := Generate()
	for name, content := range map[string]string{
		"leading space":   " RMTOKEN" + tok + "\n",
		"leading newline": "\nRMTOKEN" + tok + "\n",
		"lower-case":      "rmtoken" + tok + "\n",
		"text before":     "Your token: RMTOKEN" + tok + "\n",
		"prefix only":     "RMTOKEN\n",
		"prefix space":    "RMTOKEN " + tok + "\n",
	} {
		if got := find(t, rm(), mixed("", tokenPart(content))); got.OK() {
			t.Errorf("%s: found %v", name, got)
		}
	}
	// Trailing content after the token does not matter; the token ends at
	// the first character outside its alphabet.
	if got := find(t, rm(), mixed("", tokenPart("RMTOKEN"+tok+" and more text\n"))); got.Token != tok {
		t.Errorf("token with trailing text: %q", got.Token)
	}
	// Without a final newline, at the end of the part.
	part := "Content-Type: text/plain\n\nRMTOKEN" + tok
	msg := "Content-Type: multipart/mixed; boundary=b\n\n--b\n" + part + "\n--b--\n"
	if got := find(t, rm(), msg); got.Token != tok {
		t.Errorf("token without a newline: %q", got.Token)
	}
}

func TestBoundaryForms(t *testing.T) {
	t.Parallel()
	tok := Generate()
	for name, tt := range map[string]struct{ ct, b string }{
		"quoted":          {`multipart/mixed; boundary="a b:c"`, "a b:c"},
		"upper-case type": {`MULTIPART/MIXED; BOUNDARY=XyZ`, "XyZ"},
		"extra params":    {`multipart/mixed; charset=utf-8; boundary=xyz; foo=bar`, "xyz"},
		"folded":          {"multipart/mixed;\n boundary=\"xyz\"", "xyz"},
		"70 characters":   {"multipart/mixed; boundary=" + strings.Repeat("7", 70), strings.Repeat("7", 70)},
	} {
		ct, b := tt.ct, tt.b
		msg := "Content-Type: " + ct + "\n\npreamble\n--" + b + "\n" + textPart + "--" + b + "   \n" +
			tokenPart("RMTOKEN"+tok+"\n") + "--" + b + "--\n"
		endings(t, msg, func(t *testing.T, msg string) {
			if got := find(t, rm(), msg); got.Token != tok {
				t.Errorf("%s: Find = %q", name, got.Token)
			}
		})
	}
	// A line that merely starts with the boundary is no delimiter.
	msg := "Content-Type: multipart/mixed; boundary=b\n\n--b\n" + textPart + "--bb\n" + tokenPart("RMTOKEN"+tok+"\n") + "--b--\n"
	if got := find(t, rm(), msg); got.OK() {
		t.Errorf("--bb taken as a delimiter of b: found %v", got)
	}
}

// TestZeroFinder checks that a Finder without a prefix never takes a part
// for a token file: with an empty prefix every part that starts with a
// word would otherwise be "a token" and be stripped.
func TestZeroFinder(t *testing.T) {
	t.Parallel()
	msg := mixed("", textPart, tokenPart("RMTOKEN"+Generate()+"\n"))
	for _, f := range []Finder{{}, {Header: "X-Restricted-Token"}} {
		if got := find(t, f, msg); got.OK() {
			t.Errorf("%+v: found %v", f, got)
		}
		if out, _, removed := strip(t, f, msg); removed != 0 || out != bodyOf(t, msg) {
			t.Errorf("%+v: StripParts removed %d parts", f, removed)
		}
	}
}

// TestLongTokenInEncodedPart: only the start of an encoded part is decoded,
// enough for a byte-order mark, the prefix, a token of MaxLength and the
// byte after it; a token of MaxLength is found and a longer run is none,
// whatever follows in the part.
func TestLongTokenInEncodedPart(t *testing.T) {
	t.Parallel()
	bom := "\xEF\xBB\xBF"
	tail := "\n" + strings.Repeat("more content after the token file\n", 300)
	for _, n := range []int{MaxLength, MaxLength + 1} {
		tok := strings.Repeat("k", n)
		want := ""
		if n <= MaxLength {
			want = tok
		}
		content := bom + "RMTOKEN" + tok + tail
		for name, part := range map[string]string{
			"base64": "Content-Transfer-Encoding: base64\n\n" + b64Lines([]byte(content), 76, "\n"),
			"qp":     "Content-Transfer-Encoding: quoted-printable\n\n=EF=BB=BFRMTOKEN" + tok + tail,
		} {
			endings(t, mixed("", textPart, part), func(t *testing.T, msg string) {
				if got := find(t, rm(), msg); got.Token != want {
					t.Errorf("%s, %d characters: Find = %q, want %q", name, n, got.Token, want)
				}
			})
		}
	}
}
