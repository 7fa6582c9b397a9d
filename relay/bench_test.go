package relay

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

// BenchmarkFanOut10k sends a 50 KB message to 10,000 recipients through
// internal/testsmtp twice per iteration: batched (50 recipients per
// transaction, 4 connections) and as the old Python system did (one
// transaction per recipient over one connection). It reports both rates
// and their ratio, measured in the same run.
func BenchmarkFanOut10k(b *testing.B) {
	msg, rcpts := fanOutMessage()
	run := func(maxRcpts, conns int) time.Duration { return fanOut(b, bounce, msg, rcpts, maxRcpts, conns) }

	b.ReportAllocs()
	var batched, baseline time.Duration
	for b.Loop() {
		batched += run(50, 4)
		baseline += run(1, 1)
	}
	rate := func(d time.Duration) float64 { return float64(b.N*len(rcpts)) / d.Seconds() }
	b.ReportMetric(rate(batched), "rcpts/s")
	b.ReportMetric(rate(baseline), "baseline-rcpts/s")
	b.ReportMetric(baseline.Seconds()/batched.Seconds(), "speedup")
}

// BenchmarkFanOutTaggedSender: the same batched fan-out with the plain
// bounce address and with a tagged one (VERP, issue 15), alternating in
// one run; "tagged/plain" is the ratio of their rates (1.0: no cost).
func BenchmarkFanOutTaggedSender(b *testing.B) {
	msg, rcpts := fanOutMessage()
	tagged := "board-bounces+k3x9q2mzpa@example.org"
	b.ReportAllocs()
	var plain, withTag time.Duration
	i := 0
	for b.Loop() {
		// Alternate which goes first, so that neither always meets the
		// machine warmed up (or busy) by the other.
		if i%2 == 0 {
			plain += fanOut(b, bounce, msg, rcpts, 50, 4)
			withTag += fanOut(b, tagged, msg, rcpts, 50, 4)
		} else {
			withTag += fanOut(b, tagged, msg, rcpts, 50, 4)
			plain += fanOut(b, bounce, msg, rcpts, 50, 4)
		}
		i++
	}
	rate := func(d time.Duration) float64 { return float64(b.N*len(rcpts)) / d.Seconds() }
	b.ReportMetric(rate(withTag), "rcpts/s")
	b.ReportMetric(rate(plain), "plain-rcpts/s")
	b.ReportMetric(plain.Seconds()/withTag.Seconds(), "tagged/plain")
}

func fanOutMessage() ([]byte, []string) {
	var body bytes.Buffer
	body.WriteString("From: board@example.org\r\nTo: board@example.org\r\nSubject: benchmark\r\n\r\n")
	for body.Len() < 50<<10 {
		body.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	return body.Bytes(), addresses(10000, "member%05d@example.net")
}

// fanOut sends msg to rcpts from from through a fresh capture server and
// returns how long the fan-out took.
func fanOut(b *testing.B, from string, msg []byte, rcpts []string, maxRcpts, conns int) time.Duration {
	srv := testsmtp.Start(b, testsmtp.Options{DiscardData: true})
	cfg := relayConfig(srv)
	cfg.MaxRecipients, cfg.Connections = maxRcpts, conns
	c, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	delivered := 0
	start := time.Now()
	c.Send(b.Context(), from, rcpts, func() io.Reader { return bytes.NewReader(msg) }, func(rs []Result) {
		for _, r := range rs {
			if r.Err == nil {
				delivered++
			}
		}
	})
	elapsed := time.Since(start)
	if delivered != len(rcpts) || len(srv.Recipients()) != len(rcpts) {
		b.Fatalf("%d delivered, %d at the server, want %d", delivered, len(srv.Recipients()), len(rcpts))
	}
	srv.Close()
	return elapsed
}
