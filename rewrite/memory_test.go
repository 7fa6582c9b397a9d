package rewrite

import (
	"bytes"
	"encoding/base64"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
)

// repeatReader reads line n times.
type repeatReader struct {
	line []byte
	n    int
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 && r.n > 0 {
		k := copy(p, r.line[r.off:])
		p, total, r.off = p[k:], total+k, r.off+k
		if r.off == len(r.line) {
			r.off, r.n = 0, r.n-1
		}
	}
	if total == 0 && r.n == 0 {
		return 0, io.EOF
	}
	return total, nil
}

// heapSampler writes to w and records the largest live heap it sees,
// every sampleEvery bytes.
type heapSampler struct {
	w       io.Writer
	n, next int64
	peak    uint64
}

const sampleEvery = 4 << 20

func (h *heapSampler) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	if h.n >= h.next {
		h.next = h.n + sampleEvery
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		h.peak = max(h.peak, ms.HeapAlloc)
	}
	return h.w.Write(p)
}

// bigTextMessage is a message of size bytes, streamed: a base64 text part
// of four fifths of it with the token at its end, then an attachment.
// Each line of the text part is a whole encoding of 56 bytes, padded: as
// some clients write base64, and as lenient readers decode it.
func bigTextMessage(size int) (io.Reader, int64) {
	chunk := []byte("The board met and decided many things, all minuted here") // 56 bytes
	line := []byte(base64.StdEncoding.EncodeToString(chunk) + "\r\n")
	bin := bytes.Repeat([]byte{0xAB, 0x01, 0x7F}, 19)
	binLine := []byte(base64.StdEncoding.EncodeToString(bin) + "\r\n")
	head := leakHead + "Subject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	tail := b64Lines(" token "+scrubToken+" at the end\r\n") + "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	nText, nBin := size/5*4/len(line), size/5/len(binLine)
	r := io.MultiReader(strings.NewReader(head), &repeatReader{line: line, n: nText}, strings.NewReader(tail),
		&repeatReader{line: binLine, n: nBin}, strings.NewReader("--b--\r\n"))
	return r, int64(len(head) + nText*len(line) + len(tail) + nBin*len(binLine) + 7)
}

// TestMemoryBound50MB: a 50 MB message whose 40 MB text part must be
// decoded (the token is at its end) is copied, signed, with a bounded
// heap: the part goes to a spool file beyond partMemoryMax. Under the race
// detector, which makes it ten times slower, the message is 12 MB (still
// ten times partMemoryMax). Not parallel: it reads the process's heap,
// which other tests would disturb.
func TestMemoryBound50MB(t *testing.T) {
	n := 50 << 20
	if raceDetector {
		n = 12 << 20
	}
	r, size := bigTextMessage(n)
	out, err := os.Create(t.TempDir() + "/copy.eml")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	c := scrubCopy()
	c.SpoolDir = t.TempDir()
	c.Key = &Key{Domain: "example.org", Selector: "rm1", Signer: fuzzKey()}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	hs := &heapSampler{w: out}
	res, err := Write(hs, r, c)
	if err != nil {
		t.Fatal(err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	peak := max(hs.peak, after.HeapAlloc)
	t.Logf("message %d bytes, copy %d; live heap before %d KiB, peak %d KiB; allocated %d MiB",
		size, res.Size, before.HeapAlloc>>10, peak>>10, (after.TotalAlloc-before.TotalAlloc)>>20)
	if peak > before.HeapAlloc+16<<20 {
		t.Errorf("the heap grew by %d MiB copying a %d MiB message", (peak-before.HeapAlloc)>>20, size>>20)
	}
	cp, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cp, []byte(scrubToken)) {
		t.Fatal("the token is in the copy's bytes")
	}
	_, enc, _ := strings.Cut(string(cp), "base64\r\n\r\n")
	enc, _, _ = strings.Cut(enc, "--b")
	dec, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(enc, "\r\n", ""))
	if err != nil || !bytes.HasSuffix(dec, []byte(" token [token removed] at the end\r\n")) || len(dec) < n/2 {
		t.Errorf("the text part decodes to %d bytes ending %q (%v)", len(dec), dec[max(0, len(dec)-60):], err)
	}
}
