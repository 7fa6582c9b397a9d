package rewrite

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/token"
)

// benchMessages are the shapes of mail a list sees, from a short note to a
// message with a large attachment, with and without the token pasted into
// an encoded view. Each is built once, deterministically.
func benchMessages() []struct {
	name string
	msg  []byte
} {
	text := strings.Repeat("Minutes of the board meeting, item by item, with decisions and owners.\r\n", 60) // ~4 KiB
	b64 := func(s string) string {
		enc := base64.StdEncoding.EncodeToString([]byte(s))
		var b strings.Builder
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		return b.String() + enc + "\r\n"
	}
	qp := func(s string) string {
		var b bytes.Buffer
		w := quotedprintable.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String() + "\r\n"
	}
	attachment := make([]byte, 1<<20)
	for i := range attachment {
		attachment[i] = byte(i * 7919 >> 3)
	}
	head := "From: Alice <alice@example.net>\r\nTo: board@example.org\r\nSubject: Minutes\r\nMessage-ID: <b@x>\r\n" +
		"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nX-Restricted-Token: " + scrubToken + "\r\nMIME-Version: 1.0\r\n"
	multipart := func(parts ...string) []byte {
		s := head + "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
		for _, p := range parts {
			s += "--b1\r\n" + p
		}
		return []byte(s + "--b1--\r\n")
	}
	bigText := strings.Repeat(text, 64) // ~256 KiB
	return []struct {
		name string
		msg  []byte
	}{
		{"text-4KiB", []byte(head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text)},
		{"encoded-subject", []byte(strings.Replace(head, "Subject: Minutes", "Subject: =?utf-8?q?M=C3=B8te_?=\r\n =?utf-8?b?"+
			base64.StdEncoding.EncodeToString([]byte("referat "+scrubToken))+"?=", 1) + "Content-Type: text/plain\r\n\r\n" + text)},
		{"b64-text-256KiB", multipart("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(bigText))},
		{"b64-text-256KiB-token", multipart("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			b64(bigText+"my token is "+scrubToken+"\r\n"))},
		{"qp-html-256KiB", multipart("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			qp(strings.ReplaceAll(bigText, "board", "b=C3=B8ard")))},
		{"attachment-1MiB", multipart("Content-Type: text/plain\r\n\r\n"+text,
			"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"+b64(string(attachment)))},
	}
}

// BenchmarkWrite measures the whole copy (header, body, DKIM) of each
// shape. "floor" is, in the same run, what reading the header and copying
// the body to the CRLF writer costs without any token handling: the
// ratio write/floor is the price of the rewrite.
func BenchmarkWrite(b *testing.B) {
	key := &Key{Domain: "example.org", Selector: "rm1", Signer: fuzzKey()}
	for _, m := range benchMessages() {
		c := scrubCopy()
		c.Key = key
		b.Run("write/"+m.name, func(b *testing.B) {
			b.SetBytes(int64(len(m.msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Write(io.Discard, bytes.NewReader(m.msg), c); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("floor/"+m.name, func(b *testing.B) {
			b.SetBytes(int64(len(m.msg)))
			b.ReportAllocs()
			for b.Loop() {
				br := bufio.NewReaderSize(bytes.NewReader(m.msg), 64<<10)
				if _, err := mailheader.Read(br); err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(&crlfWriter{w: io.Discard}, br); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStripOnly is the token walker alone over the same bodies, for
// reading the split of BenchmarkWrite between finding parts and scrubbing.
func BenchmarkStripOnly(b *testing.B) {
	f := token.Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"}
	for _, m := range benchMessages() {
		b.Run(m.name, func(b *testing.B) {
			b.SetBytes(int64(len(m.msg)))
			for b.Loop() {
				br := bufio.NewReaderSize(bytes.NewReader(m.msg), 64<<10)
				h, err := mailheader.Read(br)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := f.StripParts(io.Discard, h.Get("Content-Type"), br); err != nil {
					b.Fatal(fmt.Errorf("strip: %w", err))
				}
			}
		})
	}
}

// fuzzKey is a fixed Ed25519 key: signing costs the same in every run.
func fuzzKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}
