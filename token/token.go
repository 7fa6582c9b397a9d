// Package token is the posting-token core: generating tokens, hashing them
// for storage, the record a store keeps for each, and finding a token in a
// message through the three carriers of SPEC.md (a token-file MIME part, a
// header field, the subaddress of a restricted recipient) — and removing
// every carrier before a message is redistributed.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Hash is the SHA-256 of a token's canonical (lower-case) form. Stores keep
// only this; the plain token is shown once, when it is issued.
type Hash [sha256.Size]byte

// HashOf returns the hash under which a store keeps tok. Tokens are matched
// case-insensitively, so the hash is of the lower-case form.
func HashOf(tok string) Hash { return sha256.Sum256([]byte(strings.ToLower(tok))) }

// Equal compares two hashes in constant time.
func (h Hash) Equal(o Hash) bool { return subtle.ConstantTimeCompare(h[:], o[:]) == 1 }

// secretBytes gives 160 bits, above SPEC.md's floor of 128.
const secretBytes = 20

// lowerBase32 writes only a-z and 2-7: lower-case letters and digits that
// survive in an address local part and in a file name.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Generate returns a new token (32 characters, 160 bits from crypto/rand).
func Generate() string {
	b := make([]byte, secretBytes)
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+).
	_, _ = rand.Read(b)
	return lowerBase32.EncodeToString(b)
}

// NewID returns a short public identifier for a token record: 10 characters,
// unrelated to the secret, safe to log and to show in `token list`.
func NewID() string {
	b := make([]byte, 7)
	_, _ = rand.Read(b)
	return lowerBase32.EncodeToString(b)[:10]
}

// MaxLength bounds what finding accepts as a token, so that a hostile
// message cannot make us hash megabytes.
const MaxLength = 256

// isTokenByte is the alphabet finding accepts: SPEC.md allows letters,
// digits, '-' and '_' so that LEGO's fixture token ("test_token") is found.
func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// leadingToken returns the run of token characters at the start of b, or
// "" when there is none or it is longer than MaxLength.
func leadingToken(b []byte) string {
	n := 0
	for n < len(b) && isTokenByte(b[n]) {
		n++
	}
	if n == 0 || n > MaxLength {
		return ""
	}
	return string(b[:n])
}

// Record is what a store keeps for one issued token.
type Record struct {
	ID          string
	Hash        Hash
	List        string    // restricted address (address.Key form)
	Sender      string    // bound sender (address.Key form), "" for any
	Created     time.Time // UTC
	Expires     time.Time // zero: never
	UsesAllowed int
	UsesSpent   int
	Recipients  []string // replaces the list's recipients when not empty
	HideSender  bool
	Revoked     bool
	// Owner and ExternalRef are opaque to restrictedmail: a portal (the
	// HTTP API) records who asked for the token and its own reference.
	Owner       string
	ExternalRef string
	// Report overrides the list's report to the sender ("none",
	// "summary", "failures"); "" takes the list's.
	Report string
}

// UsesLeft is how many more deliveries the token may authorise.
func (r Record) UsesLeft() int {
	if r.UsesSpent >= r.UsesAllowed {
		return 0
	}
	return r.UsesAllowed - r.UsesSpent
}

// Expired reports whether the token has expired at now.
func (r Record) Expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// FileContent is the token file a sender attaches: prefix, token, newline.
func FileContent(prefix, tok string) []byte { return []byte(prefix + tok + "\n") }

// Carrier says where in a message a token was found.
type Carrier int

// The carriers of SPEC.md.
const (
	CarrierNone Carrier = iota
	CarrierSubaddress
	CarrierHeader
	CarrierPart
)

func (c Carrier) String() string {
	switch c {
	case CarrierSubaddress:
		return "subaddress"
	case CarrierHeader:
		return "header"
	case CarrierPart:
		return "part"
	}
	return "none"
}

// Found is the result of looking for a token. Its String never shows the
// token, so that it can be logged.
type Found struct {
	Token   string
	Carrier Carrier
}

// OK reports whether a token was found.
func (f Found) OK() bool { return f.Token != "" }

func (f Found) String() string {
	if !f.OK() {
		return "no token"
	}
	return fmt.Sprintf("token in %s", f.Carrier)
}

// LogValue keeps the token out of structured logs.
func (f Found) LogValue() slog.Value { return slog.StringValue(f.String()) }

// Why a token cannot be used, as a store reports it when spending.
var (
	ErrNotFound = errors.New("token not found")
	ErrUsedUp   = errors.New("token already used")
	ErrRevoked  = errors.New("token revoked")
	ErrExpired  = errors.New("token expired")
)
