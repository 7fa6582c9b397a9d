package token

import (
	"bytes"
	"testing"
)

// BenchmarkFindEnd25MB finds a token in the last part of a 25 MB message,
// the worst case for the part carrier: every byte is read. Memory per
// operation must stay near the walker's fixed buffers, far below the size
// of the message.
func BenchmarkFindEnd25MB(b *testing.B) {
	tok := Generate()
	msg := bigMessage(25<<20, tok)
	f := rm()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		found, err := f.Find(bytes.NewReader(msg))
		if err != nil || found.Token != tok {
			b.Fatalf("Find = %q, %v", found.Token, err)
		}
	}
}
