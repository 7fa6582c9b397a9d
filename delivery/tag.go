package delivery

import (
	"crypto/rand"
	"encoding/base32"
)

// tagEncoding writes tags in lower-case letters and digits: they travel in
// an address's local part, which Postfix's tables fold to lower case.
var tagEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// TagLength is the length of a bounce tag: 10 characters, 50 random bits.
// A forger who does not see the copies' envelope would have to guess one
// of the journal's tags among 2^50.
const TagLength = 10

// NewTag returns a new random bounce tag for a delivery (never the token,
// nothing derived from it).
func NewTag() string {
	b := make([]byte, 7)
	_, _ = rand.Read(b) // never fails on supported platforms (Go 1.24+)
	return tagEncoding.EncodeToString(b)[:TagLength]
}
