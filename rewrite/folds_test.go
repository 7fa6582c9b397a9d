package rewrite

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
)

// TestFoldedLongLineScrubbed: Postfix's LMTP client breaks a line longer
// than 998 bytes with CRLF SP. A token (or the prefix and a token) cut by
// that fold at any position is replaced — in clear text, in a
// quoted-printable part, in a Subject — and no line of the copy becomes
// longer than the line it came from.
func TestFoldedLongLineScrubbed(t *testing.T) {
	t.Parallel()
	secrets := []struct{ name, s string }{
		{"token", scrubToken},
		{"TOKEN", strings.ToUpper(scrubToken)},
		{"token line", "RMTOKEN" + otherToken},
	}
	for _, sec := range secrets {
		for k := 0; k <= len(sec.s); k++ {
			// The fold falls after k characters of the secret; a second
			// fold farther on checks lines folded more than once.
			line := strings.Repeat("a", 998-k) + sec.s + " " + strings.Repeat("b ", 600) + sec.s[:5] + "!"
			folded := postfixFold(line, 998)
			if !strings.Contains(folded, "\r\n ") {
				t.Fatal("the test line was not folded")
			}
			subject := postfixFold("Subject: "+strings.Repeat("s", 989-k)+sec.s+" end", 998)
			msgs := map[string]string{
				"8bit": leakHead + "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
					"first line\r\n" + folded + "\r\n  indented line\r\n",
				"qp": leakHead + "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
					"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
					strings.Replace(folded, "aaaa", "=C3=A6", 1) + "\r\n--b--\r\n",
				"subject": leakHead + subject + "\r\nContent-Type: text/plain\r\n\r\nhi\r\n",
				// base64 written on one line, as some clients do: the
				// fold is in the encoding, which decoding reads through.
				"base64": leakHead + "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
					postfixFold(b64s(line), 998) + "\r\n",
			}
			for where, msg := range msgs {
				cp, _ := write(t, []byte(msg), scrubCopy())
				if l := leaksIn(cp, "RMTOKEN", scrubToken); len(l) > 0 {
					t.Fatalf("%s, %s cut after %d: %s", where, sec.name, k, l[0])
				}
				if n := longestLine(cp); n > 998 {
					t.Errorf("%s, %s cut after %d: a line of %d bytes in the copy", where, sec.name, k, n)
				}
				if where == "8bit" && !bytes.Contains(cp, []byte("\r\nfirst line\r\n")) || !bytes.Contains(cp, []byte("\r\n  indented line\r\n")) && where == "8bit" {
					t.Errorf("%s: the lines around changed", where)
				}
			}
		}
	}
}

func longestLine(b []byte) int {
	n := 0
	for _, l := range bytes.Split(b, []byte("\r\n")) {
		n = max(n, len(l))
	}
	return n
}

// TestFoldWithoutTokenUntouched: continuation lines that are no fold of a
// token — indented text, a folded header — keep their bytes.
func TestFoldWithoutTokenUntouched(t *testing.T) {
	t.Parallel()
	body := "RMTOKEN\r\n alone at the end of a line, then indented\r\nword\r\n word\r\n" + postfixFold(strings.Repeat("x y ", 400), 998) + "\r\n"
	msg := leakHead + "Subject: a folded\r\n subject\r\nContent-Type: text/plain\r\n\r\n" + body
	cp, _ := write(t, []byte(msg), scrubCopy())
	_, get, got := header(t, cp)
	if string(got) != body {
		t.Errorf("body changed:\n got %q\nwant %q", got, body)
	}
	if s := get("Subject"); len(s) != 1 || s[0] != "a folded subject" {
		t.Errorf("Subject = %q", s)
	}
}

// TestNestedAndForwardedScrubbed: encoded text parts inside a
// multipart/alternative inside a multipart/mixed, and in a forwarded
// message (its encoded Subject, its single-part base64 body, its own
// multipart), are scrubbed; the signature verifies with both verifiers.
func TestNestedAndForwardedScrubbed(t *testing.T) {
	t.Parallel()
	tok := scrubToken
	inner := func(boundary string) string {
		return "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n--" + boundary + "\r\n" +
			"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe " + tok[:20] + "=\r\n" + tok[20:] + "\r\n" +
			"--" + boundary + "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			b64Lines("<html><body><p>Token: <tt>"+strings.ToUpper(tok)+"</tt></p></body></html>") + "--" + boundary + "--\r\n"
	}
	msg := leakHead + "Subject: nested\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\n" + inner("alt1") +
		"--outer\r\nContent-Type: message/rfc822\r\n\r\n" +
		"From: Bob <bob@example.net>\r\nSubject: =?utf-8?b?" + b64s("Fwd: "+tok) + "?=\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines("forwarded "+tok+"\r\n") +
		"--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: Carol <carol@example.net>\r\nSubject: plain\r\nMIME-Version: 1.0\r\n" + inner("alt2") +
		"--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nuntouched\r\n--outer--\r\n"
	key := dkimtest.NewKey(t, "rsa", "example.org", "rm1")
	c := scrubCopy()
	c.Key = keyOf(key)
	cp, _ := write(t, []byte(msg), c)
	noLeak(t, cp, tok)
	// Quoted-printable shows the marker in clear, base64 and encoded
	// words do not: one in each of the two quoted-printable parts.
	if n := strings.Count(string(cp), removedMarker); n != 2 {
		t.Errorf("%d markers in clear, want 2", n)
	}
	if !bytes.Contains(cp, []byte("--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nuntouched\r\n--outer--\r\n")) {
		t.Errorf("the untouched part changed:\n%s", cp)
	}
	if got := dkimtest.VerifyGo(t, cp, key); len(got) != 1 {
		t.Errorf("go-msgauth: %v", got)
	}
	dkimtest.VerifyPython(t, cp, key)
}

// TestUTF16TextPartScrubbed: a text part in UTF-16 (which does not write
// ASCII as ASCII) is transcoded to be compared, and written back in
// UTF-16 with its transfer encoding.
func TestUTF16TextPartScrubbed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ charset, cte, content string }{
		{"utf-16le", "base64", b64Lines("\xff\xfe" + utf16le("Hei "+scrubToken+"\r\n"))},
		{"utf-16", "base64", b64Lines("\xfe\xff" + string(utf16be("Hei RMTOKEN"+otherToken+"\r\n")))},
		{"UTF-16BE", "binary", string(utf16be("Hei " + scrubToken + "\r\n"))},
	} {
		msg := leakHead + "Subject: utf16\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=" + tc.charset +
			"\r\nContent-Transfer-Encoding: " + tc.cte + "\r\n\r\n" + tc.content + "\r\n--b--\r\n"
		cp, _ := write(t, []byte(msg), scrubCopy())
		noLeak(t, cp, scrubToken)
		found := false
		for _, v := range readerViews(cp) {
			if strings.HasSuffix(v.where, "content text/plain") && bytes.Contains(v.text, []byte("Hei [token removed]")) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s/%s: the part does not read \"Hei [token removed]\":\n%q", tc.charset, tc.cte, cp)
		}
	}
}

// TestPartsWithoutTokenKeepTheirBytes: the message's parts without a
// token — encoded text, HTML, attachments, a forwarded message, an encoded
// Subject — come out byte for byte, whatever their encodings.
func TestPartsWithoutTokenKeepTheirBytes(t *testing.T) {
	t.Parallel()
	body := "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines("Hei på deg "+strings.Repeat("tekst ", 50)) +
		"--b\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>Gr=FC=DFe</p>  =\r\nmore   \r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-16le\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines(utf16le("plain utf-16")) +
		"--b\r\nContent-Type: image/png; name*=utf-8''bilde%20%C3%B8.png\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines("\x89PNG\r\n\x1a\n") +
		"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: =?utf-8?q?m=C3=B8te?=\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines("inner") +
		"--b--\r\n"
	head := leakHead + "Subject: =?utf-8?q?M=C3=B8te?= =?iso-8859-1?q?_i_dag?=\r\nContent-Type: multipart/mixed; boundary=b\r\n"
	cp, _ := write(t, []byte(head+"\r\n"+body), scrubCopy())
	_, _, got := header(t, cp)
	if string(got) != body {
		t.Errorf("the body changed:\n got %q\nwant %q", got, body)
	}
	if !bytes.Contains(cp, []byte("Subject: =?utf-8?q?M=C3=B8te?= =?iso-8859-1?q?_i_dag?=\r\n")) {
		t.Errorf("the Subject changed")
	}
}

// TestSpoolBeyondMemory: a text part larger than what is held in memory
// is spooled to a file that is gone once the copy is written, and still
// scrubbed at its end.
func TestSpoolBeyondMemory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	text := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 3*partMemoryMax/58/4*4) + "end " + scrubToken + "\r\n"
	msg := leakHead + "Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines(text)
	if len(msg) < 2*partMemoryMax {
		t.Fatalf("the part is only %d bytes", len(msg))
	}
	c := scrubCopy()
	c.SpoolDir = dir
	cp, _ := write(t, []byte(msg), c)
	noLeak(t, cp, scrubToken)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("spool files left behind: %v", ents)
	}
	c.SpoolDir = dir + "/missing"
	if _, err := Write(new(bytes.Buffer), strings.NewReader(msg), c); err == nil {
		t.Errorf("a spool directory that does not exist was not an error")
	} else if !strings.Contains(err.Error(), "spooling a text part") {
		t.Errorf("error = %v", err)
	}
}

// TestPostfixFoldHelper pins the helper to Postfix's behaviour: limit
// bytes, then a space and limit-1 bytes per line.
func TestPostfixFoldHelper(t *testing.T) {
	t.Parallel()
	if got := strings.ReplaceAll(postfixFold("abcdefgh", 3), "\r\n", "|"); got != "abc| de| fg| h" {
		t.Errorf("got %q", got)
	}
}

// TestForwardedCarriersScrubbed: a forwarded message's own token header
// and a restricted address with a subaddress in its header hold somebody
// else's token: gone from the copy, as the forwarded token files are.
func TestForwardedCarriersScrubbed(t *testing.T) {
	t.Parallel()
	msg := leakHead + "Subject: fwd\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" +
		"From: Bob <bob@example.net>\r\nTo: Board <board+" + otherToken + "@example.org>\r\nX-Restricted-Token:\r\n " + otherToken + "\r\n" +
		"Subject: old\r\n\r\nold post\r\n--b--\r\n"
	cp, _ := write(t, []byte(msg), scrubCopy())
	if bytes.Contains(cp, []byte(otherToken)) {
		t.Errorf("the forwarded message's token is in the copy:\n%s", cp)
	}
	if !bytes.Contains(cp, []byte("To: Board <board@example.org>\r\nX-Restricted-Token:\r\n [token removed]\r\nSubject: old\r\n")) {
		t.Errorf("the forwarded header is not as expected:\n%s", cp)
	}
}
