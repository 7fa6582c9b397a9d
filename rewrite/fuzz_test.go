package rewrite

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

// fuzzToken is the token every fuzz input is judged against; the seeds in
// testdata/fuzz/FuzzWrite carry it in every carrier and in the places
// where it is no carrier.
const fuzzToken = "fuzztok2secret3aaaaaaaaaaaaaaaaa"

// FuzzWrite: whatever the message, Write never panics and either fails or
// writes a copy (signature included) in which neither the token, in any
// case, nor the prefix followed by a token character appears in clear, and
// whose Size is what it wrote. Carriers are removed, other occurrences
// scrubbed; token files in base64 inside non-carrier text stay out of
// sight by nature, and are not what this target checks.
func FuzzWrite(f *testing.F) {
	board := address.MustParse("board@example.org")
	key := &Key{Domain: "example.org", Selector: "rm1", Signer: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))}
	c := Copy{
		List: &policy.List{Name: "Board", Addr: board}, Lists: []address.Address{board, address.MustParse("events@example.org")},
		Delimiter: "+", Finder: token.Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"}, Token: fuzzToken,
		MessageID: "<m@mx.example.org>", Date: fixedDate, Key: key,
	}
	f.Add([]byte("From: a@example.net\r\nX-Restricted-Token: " + fuzzToken + "\r\n\r\nhi RMTOKEN" + fuzzToken + "\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var out bytes.Buffer
		res, err := Write(&out, bytes.NewReader(msg), c)
		if err != nil {
			return // an unreadable message is refused, not copied
		}
		if res.Size != int64(out.Len()) {
			t.Fatalf("Size = %d, wrote %d", res.Size, out.Len())
		}
		cp := append([]byte(res.Signature), out.Bytes()...)
		if bytes.Contains(bytes.ToLower(cp), []byte(fuzzToken)) {
			t.Fatalf("the token is in the copy:\n%q", cp)
		}
		for rest := cp; ; {
			j := bytes.Index(rest, []byte("RMTOKEN"))
			if j < 0 {
				break
			}
			if rest = rest[j+len("RMTOKEN"):]; len(rest) > 0 && isTokenByte(rest[0]) {
				t.Fatalf("a token file line is in the copy:\n%q", cp)
			}
		}
		if l := leaksIn(cp, "RMTOKEN", fuzzToken); len(l) > 0 {
			t.Fatalf("a reader sees a token: %s\ninput:\n%q\ncopy:\n%q", l[0], msg, cp)
		}
	})
}
