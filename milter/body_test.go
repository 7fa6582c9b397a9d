package milter

import (
	"encoding/base64"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// repeater yields line over and over, without holding more than line.
type repeater struct {
	line []byte
	off  int
}

func (r *repeater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.line[r.off:])
		n += c
		r.off = (r.off + c) % len(r.line)
	}
	return n, nil
}

// bigBody streams a multipart body with a text part of filler bytes and the
// token part before or after it, generated as it is read.
func bigBody(tok string, filler int64, tokenFirst bool) io.Reader {
	line := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20) + "\r\n")
	text := io.MultiReader(
		strings.NewReader("--b1\r\nContent-Type: text/plain\r\n\r\n"),
		io.LimitReader(&repeater{line: line}, filler),
		strings.NewReader("\r\n"))
	tokenPart := strings.NewReader("--b1\r\nContent-Type: application/octet-stream; name=token\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + b64("LEGOTOKEN"+tok+"\n") + "\r\n")
	if tokenFirst {
		return io.MultiReader(tokenPart, text, strings.NewReader("--b1--\r\n"))
	}
	return io.MultiReader(text, tokenPart, strings.NewReader("--b1--\r\n"))
}

// heapSampler records the largest heap in use while it runs.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	max  uint64
}

func sampleHeap() *heapSampler {
	s := &heapSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			s.max = max(s.max, ms.HeapInuse)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) Stop() uint64 {
	close(s.stop)
	s.wg.Wait()
	return s.max
}

// TestFiftyMegabyteMessage streams a 50 MB message whose token part comes
// last: accepted, with the heap bounded. Not parallel, so that the heap
// measured is this message's.
func TestFiftyMegabyteMessage(t *testing.T) {
	h := newHarness(t)
	tok := h.addToken(t, nil)
	cs := h.session(t)
	m := newMail("", []string{board})
	const size = 50 << 20
	m.body = bigBody(tok, size, false)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sampler := sampleHeap()
	start := time.Now()
	out := send(t, cs, m)
	elapsed := time.Since(start)
	peak := sampler.Stop()

	wantAccept(t, out, "eom")
	grown := int64(peak) - int64(before.HeapInuse)
	t.Logf("50 MB message: %v; heap in use %.1f MB before, peak %.1f MB (+%.1f MB)",
		elapsed.Round(time.Millisecond), mb(before.HeapInuse), mb(peak), float64(grown)/(1<<20))
	// A memory bound, not a timing: the message is never held whole.
	if grown > 32<<20 {
		t.Errorf("heap grew by %.1f MB while streaming a 50 MB message; want < 32 MB", float64(grown)/(1<<20))
	}
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

// TestTokenPartFirstThenLargeBody: once the finder has the token, the rest
// of the body is dropped without blocking the MTA.
func TestTokenPartFirstThenLargeBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.addToken(t, nil)
	cs := h.session(t)
	m := newMail("", []string{board})
	m.body = bigBody(tok, 8<<20, true)
	wantAccept(t, send(t, cs, m), "eom")

	m = newMail("", []string{board})
	m.body = bigBody("nosuchtoken", 8<<20, true)
	wantReject(t, send(t, cs, m), "eom", "Unknown posting token")
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
