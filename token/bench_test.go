package token

import (
	"bytes"
	"io"
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

// BenchmarkInBody10KB finds the token part at the end of a 10 KB body read
// through a plain io.Reader, as the milter's body pipe is: the walker
// brings its own buffers, and what it allocates per message is what the
// milter's garbage collector sees for every restricted message.
func BenchmarkInBody10KB(b *testing.B) {
	tok := Generate()
	ct, body, err := splitMessage(bigMessage(10_000, tok))
	if err != nil {
		b.Fatal(err)
	}
	f := rm()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := f.InBody(ct, struct{ io.Reader }{bytes.NewReader(body)})
		if err != nil || got != tok {
			b.Fatalf("InBody = %q, %v", got, err)
		}
	}
}
