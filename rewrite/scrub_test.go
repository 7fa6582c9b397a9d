package rewrite

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

const scrubToken = "scrubtok2secret3aaaaaaaaaaaaaaaa"

func scrubCopy() Copy {
	board := address.MustParse("board@example.org")
	return Copy{
		List: &policy.List{Name: "Board", Addr: board}, Lists: []address.Address{board}, Delimiter: "+",
		Finder: token.Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"}, Token: scrubToken,
		MessageID: "<m@x>", Date: fixedDate,
	}
}

// TestPastedTokensScrubbed: the token file's line pasted into the HTML
// of an alternative whose text part is the carrier, the token alone in the
// text (any case), another token's file line, a subaddress in the text —
// none reaches the copy; the rest of the body is kept byte for byte.
func TestPastedTokensScrubbed(t *testing.T) {
	t.Parallel()
	msg := crlf("From: Alice <alice@example.net>\nTo: board@example.org\nSubject: minutes\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/alternative; boundary=alt\n\n--alt\nContent-Type: text/plain\n\nRMTOKEN" + scrubToken + "\n" +
		"--alt\nContent-Type: text/html\n\n<div>RMTOKEN" + scrubToken + "<br></div>\n<p>also " + strings.ToUpper(scrubToken) +
		" and RMTOKENsomeoneelses_token and board+" + scrubToken + "@example.org</p>\nRMTOKEN alone stays\n--alt--\n")
	cp, res := write(t, []byte(msg), scrubCopy())
	if res.RemovedParts != 1 {
		t.Errorf("%d parts removed, want the text part", res.RemovedParts)
	}
	if bytes.Contains(bytes.ToLower(cp), []byte(scrubToken)) || bytes.Contains(cp, []byte("RMTOKENs")) {
		t.Errorf("a token is left in the copy:\n%s", cp)
	}
	_, _, body := header(t, cp)
	want := crlf("--alt\nContent-Type: text/html\n\n<div>[token removed]<br></div>\n<p>also [token removed] and [token removed] and board+[token removed]@example.org</p>\nRMTOKEN alone stays\n--alt--\n")
	if string(body) != want {
		t.Errorf("body\n got %q\nwant %q", body, want)
	}
}

// TestEncodedAuthorNameScrubbed: a token hidden in an RFC 2047 encoded
// display name would come out in clear in the new From and Reply-To.
func TestEncodedAuthorNameScrubbed(t *testing.T) {
	t.Parallel()
	name := "=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte("Alice "+scrubToken)) + "?="
	msg := crlf("From: " + name + " <alice@example.net>\nTo: board@example.org\nSubject: hi\n\nhello\n")
	cp, _ := write(t, []byte(msg), scrubCopy())
	if bytes.Contains(bytes.ToLower(cp), []byte(scrubToken)) {
		t.Errorf("the token came out of the encoded name:\n%s", cp)
	}
}

// TestScrubAcrossWrites: a line far longer than the scrubber's buffer, a
// token at every position relative to the writes, still comes out
// scrubbed, and every other byte is kept.
func TestScrubAcrossWrites(t *testing.T) {
	t.Parallel()
	filler := strings.Repeat("x ", scrubLineMax/2+100) // one line, longer than the buffer
	for _, at := range []int{0, 1, scrubLineMax - 20, scrubLineMax - 1, scrubLineMax, len(filler) - 5} {
		line := filler[:at] + "RMTOKEN" + scrubToken + " " + filler[at:] + scrubToken + "\n"
		for _, step := range []int{1, 7, 4096, scrubLineMax + 3} {
			if step == 1 && at > 100 {
				continue // byte by byte only near the start: slow under -race
			}
			var out bytes.Buffer
			s := newScrubber(&out, "RMTOKEN", scrubToken)
			for p := []byte(line); len(p) > 0; {
				n := min(step, len(p))
				if _, err := s.Write(p[:n]); err != nil {
					t.Fatal(err)
				}
				p = p[n:]
			}
			if err := s.flush(); err != nil {
				t.Fatal(err)
			}
			want := filler[:at] + removedMarker + " " + filler[at:] + removedMarker + "\n"
			if out.String() != want {
				t.Fatalf("token at %d, writes of %d: %d bytes out, want %d; token left: %v", at, step, out.Len(), len(want),
					strings.Contains(out.String(), scrubToken))
			}
		}
	}
}

// TestEightBitHeaderScrubbed is the regression test of two bugs found by
// FuzzWrite: bytes.ToLower turns a byte that is not UTF-8 into three, so in
// a Latin-1 header the subaddress scrub cut the wrong bytes (leaving part
// of the token and mangling the address) and the token scrub panicked.
func TestEightBitHeaderScrubbed(t *testing.T) {
	t.Parallel()
	msg := crlf("From: J\xe4rg <alice@example.net>\nTo: J\xe4rg \xe4\xe4 <board+" + scrubToken + "@example.org>\n" +
		"Subject: \xe4\xe4 " + strings.ToUpper(scrubToken) + "\n\nGr\xfc\xdfe " + scrubToken + "\n")
	cp, _ := write(t, []byte(msg), scrubCopy())
	_, get, body := header(t, cp)
	if got := get("To"); len(got) != 1 || got[0] != "J\xe4rg \xe4\xe4 <board@example.org>" {
		t.Errorf("To = %q", got)
	}
	if got := get("Subject"); len(got) != 1 || got[0] != "\xe4\xe4 [token removed]" {
		t.Errorf("Subject = %q", got)
	}
	if string(body) != "Gr\xfc\xdfe [token removed]\r\n" {
		t.Errorf("body = %q", body)
	}
}

// TestUnicodeCaseFoldingKeepsIndexes: UTF-8 letters whose lower case has
// another length in bytes (İ, the Kelvin sign) before a subaddress shifted
// the scrub the same way.
func TestUnicodeCaseFoldingKeepsIndexes(t *testing.T) {
	t.Parallel()
	board := address.MustParse("board@example.org")
	for _, name := range []string{"İlker İnce", "\u212a\u212a\u212a", "J\xe4rg"} {
		in := "To: " + name + " <board+" + scrubToken + "@example.org>, board+x@example.org"
		want := "To: " + name + " <board@example.org>, board@example.org"
		if got := string(scrubSubaddresses([]byte(in), []address.Address{board}, "+")); got != want {
			t.Errorf("scrubbed %q, want %q", got, want)
		}
	}
}

// TestIndexFold: the case-insensitive search finds the first match in
// either case, at the edges too, and nothing where there is none.
func TestIndexFold(t *testing.T) {
	t.Parallel()
	low := []byte("abc")
	for s, want := range map[string]int{
		"abc": 0, "xABC": 1, "aaAAbAbC": 5, "ab": -1, "": -1, "xxabx": -1, "AbcAbc": 0, "zzzzaBc": 4, "aaaaaaaab": -1,
	} {
		if got := indexFold([]byte(s), low); got != want {
			t.Errorf("indexFold(%q) = %d, want %d", s, got, want)
		}
	}
	if got := indexFold([]byte("x9z9ZQ"), []byte("9zq")); got != 3 {
		t.Errorf("digit first: %d", got)
	}
}
