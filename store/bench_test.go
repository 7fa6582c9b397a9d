package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// benchRecipients is a list of n distinct recipients.
func benchRecipients(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("member%06d@example.com", i)
	}
	return out
}

// beginBench records a new delivery of rcpts with a fresh token and
// returns its id.
func beginBench(b *testing.B, db *DB, rcpts []string) string {
	b.Helper()
	r, _ := newRecord(1)
	if err := db.AddToken(context.Background(), r); err != nil {
		b.Fatal(err)
	}
	d := Delivery{ID: r.ID + "-delivery", List: "board@example.org", TokenID: r.ID, Sender: "alice@example.net", Created: time.Now()}
	if _, existing, err := db.BeginDelivery(context.Background(), d, rcpts); err != nil || existing {
		b.Fatalf("BeginDelivery = %v, %v", existing, err)
	}
	return d.ID
}

func openBench(b *testing.B) *DB {
	b.Helper()
	db, err := Open(context.Background(), b.TempDir()+"/state.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// BenchmarkBeginDelivery records a delivery to a list of 1,000 and of
// 100,000: the journal write that precedes the first copy of a fan-out.
func BenchmarkBeginDelivery(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("rcpts=%d", n), func(b *testing.B) {
			db := openBench(b)
			rcpts := benchRecipients(n)
			b.ReportAllocs()
			for b.Loop() {
				beginBench(b, db, rcpts)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rcpts/s")
		})
	}
}

// BenchmarkRecordOutcomes records the outcomes of a 100,000-recipient
// delivery in commits of 50 (one relay transaction each) and of 1,000 (a
// group commit that gathered several), and reads the pending recipients
// first, as the LMTP endpoint does.
func BenchmarkRecordOutcomes(b *testing.B) {
	const n = 100_000
	rcpts := benchRecipients(n)
	for _, batch := range []int{50, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			db := openBench(b)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				id := beginBench(b, db, rcpts)
				b.StartTimer()
				pending, err := db.PendingRecipients(ctx, id)
				if err != nil || len(pending) != n {
					b.Fatalf("PendingRecipients = %d, %v", len(pending), err)
				}
				outs := make([]Outcome, 0, batch)
				for i, r := range pending {
					st := Delivered
					detail := ""
					if i%1000 == 0 {
						st, detail = Failed, "550 5.1.1 no such user"
					}
					outs = append(outs, Outcome{Rcpt: r, State: st, Detail: detail})
					if len(outs) == batch || i == len(pending)-1 {
						if err := db.RecordOutcomes(ctx, id, outs, time.Now()); err != nil {
							b.Fatal(err)
						}
						outs = outs[:0]
					}
				}
				if c, err := db.DeliveryCounts(ctx, id); err != nil || c.Pending != 0 || c.Failed != n/1000 {
					b.Fatalf("counts = %+v, %v", c, err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rcpts/s")
		})
	}
}

// BenchmarkTokenByHash is the store's share of every token check, in the
// milter (at RCPT, end of headers or end of message) and in the LMTP
// endpoint.
func BenchmarkTokenByHash(b *testing.B) {
	db := openBench(b)
	r, _ := newRecord(1)
	if err := db.AddToken(context.Background(), r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := db.TokenByHash(context.Background(), r.Hash); err != nil {
			b.Fatal(err)
		}
	}
}
