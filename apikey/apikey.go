// Package apikey is the format of the HTTP API's keys: a recognisable
// prefix (so that secret scanners and people know one when they see it),
// 160 random bits, and a checksum that catches a mistyped or truncated key
// before any lookup. A store keeps only the key's SHA-256 — 160 random
// bits need no slow hash — and compares it in constant time; the key is
// shown once, when it is created.
//
//	rmk_ + 32 characters (160 bits, a-z and 2-7) + 7 characters of CRC-32
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
)

// Prefix starts every key.
const Prefix = "rmk_"

const (
	secretBytes = 20 // 160 bits
	secretLen   = 32 // in base32
	sumLen      = 7  // 32 bits in base32
	// Length is the length of a key.
	Length = len(Prefix) + secretLen + sumLen
)

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Hash is what a store keeps of a key.
type Hash = [sha256.Size]byte

// HashOf returns the hash of key.
func HashOf(key string) Hash { return sha256.Sum256([]byte(key)) }

func checksum(body string) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc32.ChecksumIEEE([]byte(body)))
	return enc.EncodeToString(b[:])
}

// Generate returns a new key and its hash.
func Generate() (key string, h Hash) {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b) // never fails (Go 1.24+)
	body := Prefix + enc.EncodeToString(b)
	key = body + checksum(body)
	return key, HashOf(key)
}

// Check reports whether key is well formed: prefix, length, alphabet and
// checksum. A key that fails is not looked up.
func Check(key string) bool {
	if len(key) != Length || !strings.HasPrefix(key, Prefix) {
		return false
	}
	for i := len(Prefix); i < len(key); i++ {
		if c := key[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	body := key[:len(key)-sumLen]
	return key[len(body):] == checksum(body)
}

// NewID returns a public identifier for a key record (10 characters),
// unrelated to the secret: `apikey list` and the logs show it.
func NewID() string {
	b := make([]byte, 7)
	_, _ = rand.Read(b)
	return enc.EncodeToString(b)[:10]
}

// Scopes: what a key may do on its lists.
const (
	ScopeIssue  = "issue"  // issue tokens, re-key them, replace their recipients
	ScopeRead   = "read"   // read tokens, lists and deliveries
	ScopeRevoke = "revoke" // revoke tokens
)

// AllScopes in the order they are listed.
var AllScopes = []string{ScopeIssue, ScopeRead, ScopeRevoke}

// ParseScopes reads a comma-separated list of scopes.
func ParseScopes(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		if !slices.Contains(AllScopes, f) {
			return nil, fmt.Errorf("unknown scope %q (use %s)", f, strings.Join(AllScopes, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scope given (use %s)", strings.Join(AllScopes, ", "))
	}
	return out, nil
}

// AllLists in a key's lists means every restricted address.
const AllLists = "*"

// Covers reports whether lists (a key's) include list (address.Key form).
func Covers(lists []string, list string) bool {
	return slices.Contains(lists, AllLists) || slices.Contains(lists, list)
}
