package rewrite

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
)

// otherToken is some other token's file line pasted into a message: the
// prefix rule removes it, whatever the token.
const otherToken = "othertok7secret5bbbbbbbbbbbbbbbb"

func b64s(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// b64Lines is s in base64, 76 characters a line, as mail clients write it.
func b64Lines(s string) string {
	enc := b64s(s)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	return b.String() + enc + "\r\n"
}

func qpLines(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String() + "\r\n"
}

func utf16le(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return string(b)
}

func encodeIn(t testing.TB, enc encoding.Encoding, s string) string {
	t.Helper()
	b, err := enc.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// postfixFold breaks a line (without its line break) as Postfix's SMTP and
// LMTP clients do when it is longer than limit (smtp_line_length_limit,
// smtp_proto.c: smtp_text_out): limit bytes, CRLF, then a space and
// limit-1 bytes on each further line.
func postfixFold(line string, limit int) string {
	var b strings.Builder
	room := limit
	for len(line) > room {
		b.WriteString(line[:room] + "\r\n ")
		line = line[room:]
		room = limit - 1
	}
	return b.String() + line
}

const leakHead = "From: Alice <alice@example.net>\r\nTo: Example Board <board@example.org>\r\n" +
	"X-Kept: =?utf-8?q?caf=C3=A9_au_lait?=\r\nMessage-ID: <leak@example.net>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" +
	"X-Restricted-Token: " + scrubToken + "\r\nMIME-Version: 1.0\r\n"

// signedCopy writes the copy with an Ed25519 key and checks its signature.
func signedCopy(t *testing.T, msg []byte) ([]byte, dkimtest.Key) {
	t.Helper()
	key := dkimtest.NewKey(t, "ed25519", "example.org", "rm1")
	c := scrubCopy()
	c.Key = keyOf(key)
	cp, _ := write(t, msg, c)
	if got := dkimtest.VerifyGo(t, cp, key); len(got) != 1 {
		t.Errorf("the copy's signature does not verify: %v", got)
	}
	return cp, key
}

// decodedText is what go-message shows of a header field of cp.
func decodedText(t *testing.T, cp []byte, field string) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(cp))
	if e == nil {
		t.Fatalf("the copy cannot be read: %v", err)
	}
	s, err := e.Header.Text(field)
	if err != nil {
		t.Errorf("%s does not decode: %v", field, err)
	}
	return s
}

// TestEncodedSubjectScrubbed: a token in an RFC 2047 encoded Subject, in
// any charset, any case, split across words, inside other text, cut by a
// fold, is replaced; the field keeps the rest of its text; the other
// fields keep their bytes; the signature verifies.
func TestEncodedSubjectScrubbed(t *testing.T) {
	t.Parallel()
	tok, up := scrubToken, strings.ToUpper(scrubToken)
	b := b64s("Møte: " + tok + " i dag")
	cases := []struct {
		name, subject, want string
	}{
		{"utf-8 B", "=?utf-8?b?" + b + "?=", "Møte: [token removed] i dag"},
		{"utf-8 Q upper case", "=?UTF-8?Q?M=C3=B8te_" + up + "?=", "Møte [token removed]"},
		{"iso-8859-1 Q", "=?iso-8859-1?q?Gr=FC=DFe_" + tok + "_aus_K=F6ln?=", "Grüße [token removed] aus Köln"},
		{"windows-1252 B", "=?windows-1252?B?" + b64s(encodeIn(t, charmap.Windows1252, "€ "+tok)) + "?=", "€ [token removed]"},
		{"koi8-r B", "=?koi8-r?B?" + b64s(encodeIn(t, charmap.KOI8R, "Привет "+tok)) + "?=", "Привет [token removed]"},
		{"shift_jis B", "=?shift_jis?B?" + b64s(encodeIn(t, japanese.ShiftJIS, "会議 "+tok)) + "?=", "会議 [token removed]"},
		{"iso-2022-jp B", "=?ISO-2022-JP?B?" + b64s(encodeIn(t, japanese.ISO2022JP, "会議 "+tok+" です")) + "?=", "会議 [token removed] です"},
		{"gbk B", "=?gbk?B?" + b64s(encodeIn(t, simplifiedchinese.GBK, "会议 "+tok)) + "?=", "会议 [token removed]"},
		{"utf-16 B", "=?utf-16?b?" + b64s("\xfe\xff"+string(utf16be("Hi "+tok))) + "?=", "Hi [token removed]"},
		{"split across two words", "=?utf-8?q?Referat_" + tok[:13] + "?=\r\n =?utf-8?b?" + b64s(tok[13:]+" ok") + "?=", "Referat [token removed] ok"},
		{"split across charsets", "=?iso-8859-1?q?" + tok[:7] + "?= =?utf-8?q?" + up[7:] + "_=C3=A6?=", "[token removed] æ"},
		{"inside other text", "=?utf-8?q?abc" + tok + "def?=", "abc[token removed]def"},
		{"word then clear text", "Re: =?utf-8?q?x_" + tok[:10] + "?=" + tok[10:] + " end", "Re: x [token removed] end"},
		{"other token's line", "=?utf-8?b?" + b64s("see RMTOKEN"+otherToken+" here") + "?=", "see [token removed] here"},
		{"Postfix fold inside a word", "=?utf-8?b?" + b[:9] + "\r\n " + b[9:] + "?=", "Møte: [token removed] i dag"},
		{"no token", "=?utf-8?q?M=C3=B8te?=", "Møte"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			msg := []byte(leakHead + "Subject: " + tc.subject + "\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
			cp, _ := signedCopy(t, msg)
			noLeak(t, cp, tok)
			if got := decodedText(t, cp, "Subject"); got != tc.want {
				t.Errorf("Subject reads %q, want %q", got, tc.want)
			}
			for _, f := range []string{"X-Kept: =?utf-8?q?caf=C3=A9_au_lait?=\r\n", "To: Example Board <board@example.org>\r\n"} {
				if !bytes.Contains(cp, []byte(f)) {
					t.Errorf("%q lost its bytes:\n%s", f, cp)
				}
			}
			if tc.name == "no token" && !bytes.Contains(cp, []byte("Subject: "+tc.subject+"\r\n")) {
				t.Errorf("a Subject without a token lost its bytes:\n%s", cp)
			}
		})
	}
}

func utf16be(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return b
}

// TestEncodedAddressNameScrubbed: in an address field only the encoded
// display name is written anew; the addresses stay as they were.
func TestEncodedAddressNameScrubbed(t *testing.T) {
	t.Parallel()
	msg := []byte(strings.Replace(leakHead, "To: Example Board <board@example.org>",
		"To: =?utf-8?q?Board_"+scrubToken+"?= <board@example.org>,\r\n =?utf-8?q?Bj=C3=B8rn?= <bjorn@example.net>", 1) +
		"Subject: s\r\n\r\nhi\r\n")
	cp, _ := signedCopy(t, msg)
	noLeak(t, cp, scrubToken)
	e, _ := message.Read(bytes.NewReader(cp))
	mh := gomail.Header{Header: e.Header}
	list, err := mh.AddressList("To")
	if err != nil || len(list) != 2 {
		t.Fatalf("To does not parse: %v %v\n%s", list, err, cp)
	}
	if list[0].Name != "Board [token removed]" || list[0].Address != "board@example.org" ||
		list[1].Name != "Bjørn" || list[1].Address != "bjorn@example.net" {
		t.Errorf("To = %v", list)
	}
	if !bytes.Contains(cp, []byte("\r\n =?utf-8?q?Bj=C3=B8rn?= <bjorn@example.net>\r\n")) {
		t.Errorf("the untouched name lost its bytes:\n%s", cp)
	}
}

// TestEncodedParametersScrubbed: a file name split into RFC 2231 sections
// or percent-encoded shows its reader the token; the field is written anew.
func TestEncodedParametersScrubbed(t *testing.T) {
	t.Parallel()
	msg := []byte(leakHead + "Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
		"--b\r\nContent-Type: application/pdf; name*0=\"minutes-" + scrubToken[:9] + "\"; name*1=\"" + scrubToken[9:] + ".pdf\"\r\n" +
		"Content-Disposition: attachment; filename*=utf-8''RMTOKEN%6f" + otherToken[1:] + ".pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		b64Lines("%PDF-1.4") + "--b--\r\n")
	cp, _ := signedCopy(t, msg)
	noLeak(t, cp, scrubToken)
	if !bytes.Contains(cp, []byte("name=\"minutes-[token removed].pdf\"")) {
		t.Errorf("the name was not rewritten:\n%s", cp)
	}
}

// TestBase64TextPartScrubbed: a token pasted into a base64 text part, at
// every position relative to the encoded lines and quanta, in either case,
// and another token's file line, are replaced; the part is encoded again
// in base64 lines of at most 76 characters; the other parts keep their
// bytes.
func TestBase64TextPartScrubbed(t *testing.T) {
	t.Parallel()
	html := "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines("<p>Hei, møte i dag.</p>")
	attachment := "Content-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines(strings.Repeat("\x00\x01binary", 40))
	for k := 0; k < 60; k++ {
		tok := scrubToken
		if k%2 == 1 {
			tok = strings.ToUpper(scrubToken)
		}
		text := strings.Repeat("ø", k/2) + strings.Repeat("x", k%2) + " token: " + tok + " and RMTOKEN" + otherToken + ".\r\nBye.\r\n"
		part := "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines(text)
		msg := []byte(leakHead + "Subject: b64\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n" + part +
			"--b1\r\n" + html + "--b1\r\n" + attachment + "--b1--\r\nepilogue\r\n")
		c := scrubCopy()
		cp, _ := write(t, msg, c)
		noLeak(t, cp, scrubToken)
		_, _, body := header(t, cp)
		parts := strings.Split(string(body), "--b1")
		if len(parts) != 5 {
			t.Fatalf("offset %d: %d pieces", k, len(parts))
		}
		if parts[2] != "\r\n"+html || parts[3] != "\r\n"+attachment || parts[0] != "preamble\r\n" || parts[4] != "--\r\nepilogue\r\n" {
			t.Errorf("offset %d: the other parts changed:\n%s", k, body)
		}
		h, enc, _ := strings.Cut(parts[1], "\r\n\r\n")
		if h != "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64" {
			t.Errorf("offset %d: the part header changed: %q", k, h)
		}
		for _, l := range strings.Split(strings.TrimSuffix(enc, "\r\n"), "\r\n") {
			if len(l) > 76 {
				t.Errorf("offset %d: a base64 line of %d characters", k, len(l))
			}
		}
		dec, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(enc, "\r\n", ""))
		want := strings.Repeat("ø", k/2) + strings.Repeat("x", k%2) + " token: [token removed] and [token removed].\r\nBye.\r\n"
		if err != nil || string(dec) != want {
			t.Errorf("offset %d: the part decodes to %q (%v), want %q", k, dec, err, want)
		}
	}
}

// TestQPTextPartScrubbed: a token in a quoted-printable part, cut by a
// soft line break at every position, or written with escapes, is
// replaced; the part is encoded again with lines of at most 76 characters.
func TestQPTextPartScrubbed(t *testing.T) {
	t.Parallel()
	var escaped strings.Builder
	for _, c := range []byte(scrubToken) {
		fmt.Fprintf(&escaped, "=%02X", c)
	}
	bodies := map[string]string{
		"escaped":   "Token =\r\n" + escaped.String()[:60] + "=\r\n" + escaped.String()[60:] + " here.\r\n",
		"html":      "<p>Token <b>" + scrubToken[:5] + "=\r\n" + scrubToken[5:] + "</b></p>=0A<a href=3D\"mailto:board+" + strings.ToUpper(scrubToken) + "@example.org\">x</a>\r\n",
		"otherline": "line RMTOK=\r\nEN" + otherToken[:3] + "=\r\n" + otherToken[3:] + "\r\n",
	}
	for k := 1; k < len(scrubToken); k++ {
		bodies[fmt.Sprint("soft break at ", k)] = "Caf=C3=A9 " + scrubToken[:k] + "=\r\n" + scrubToken[k:] + " more\r\nend\r\n"
	}
	for name, qp := range bodies {
		ct := "text/plain"
		if name == "html" {
			ct = "text/html"
		}
		msg := []byte(leakHead + "Subject: qp\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n" +
			"Content-Type: " + ct + "; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp + "--b--\r\n")
		cp, _ := write(t, msg, scrubCopy())
		noLeak(t, cp, scrubToken)
		_, _, body := header(t, cp)
		_, enc, _ := strings.Cut(string(body), "\r\n\r\n")
		enc = strings.TrimSuffix(enc, "--b--\r\n")
		for _, l := range strings.Split(enc, "\r\n") {
			if len(l) > 76 {
				t.Errorf("%s: a line of %d characters", name, len(l))
			}
		}
		dec := readQP(t, enc)
		if !strings.Contains(dec, removedMarker) || strings.HasPrefix(name, "soft") && dec != "Café [token removed] more\r\nend\r\n" {
			t.Errorf("%s: decodes to %q", name, dec)
		}
	}
}

func readQP(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := b.ReadFrom(quotedprintable.NewReader(strings.NewReader(s))); err != nil {
		t.Errorf("the part is not valid quoted-printable: %v: %q", err, s)
	}
	return b.String()
}
