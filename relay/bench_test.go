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
	var body bytes.Buffer
	body.WriteString("From: board@example.org\r\nTo: board@example.org\r\nSubject: benchmark\r\n\r\n")
	for body.Len() < 50<<10 {
		body.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	msg := body.Bytes()
	rcpts := addresses(10000, "member%05d@example.net")

	run := func(maxRcpts, conns int) time.Duration {
		srv := testsmtp.Start(b, testsmtp.Options{DiscardData: true})
		cfg := relayConfig(srv)
		cfg.MaxRecipients, cfg.Connections = maxRcpts, conns
		c, err := New(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		delivered := 0
		start := time.Now()
		c.Send(b.Context(), bounce, rcpts, func() io.Reader { return bytes.NewReader(msg) }, func(rs []Result) {
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
