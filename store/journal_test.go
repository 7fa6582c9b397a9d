package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestJournalLargeDelivery records a delivery with more recipients than
// one statement writes, duplicates included, and outcomes that cross
// statement boundaries: every recipient is recorded once, and each keeps
// the first final outcome it was given.
func TestJournalLargeDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	r, _ := newRecord(1)
	add(t, db, r)
	n := 2*rowsPerStatement + 7
	var rcpts []string
	for i := range n {
		rcpts = append(rcpts, fmt.Sprintf("m%05d@example.com", i))
	}
	withDups := append(slices.Clone(rcpts), rcpts[0], rcpts[rowsPerStatement], rcpts[n-1])
	now := time.Now()
	d := Delivery{ID: "d1", List: "board@example.org", TokenID: r.ID, Sender: "alice@example.net", Created: now}
	if _, existing, err := db.BeginDelivery(ctx, d, withDups); err != nil || existing {
		t.Fatalf("BeginDelivery = %v, %v", existing, err)
	}
	pending, err := db.PendingRecipients(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pending, rcpts) { // sorted, each once
		t.Fatalf("PendingRecipients: %d recipients, want the %d distinct ones in order", len(pending), n)
	}

	// First commit: every third delivered, every seventh failed with one
	// of two replies. rcpts[3] comes twice, delivered first; its second
	// outcome shares the reply of rcpts[7], whose failure comes first of all.
	first := []Outcome{{Rcpt: rcpts[7], State: Failed, Detail: "550 5.1.1 reply 1"}}
	want := map[string]State{}
	for i, rc := range rcpts {
		switch {
		case i%3 == 0:
			first = append(first, Outcome{Rcpt: rc, State: Delivered})
			want[rc] = Delivered
		case i%7 == 0:
			first = append(first, Outcome{Rcpt: rc, State: Failed, Detail: fmt.Sprintf("550 5.1.1 reply %d", i%2)})
			want[rc] = Failed
		}
	}
	first = append(first, Outcome{Rcpt: rcpts[3], State: Failed, Detail: "550 5.1.1 reply 1"})
	if err := db.RecordOutcomes(ctx, "d1", first, now); err != nil {
		t.Fatal(err)
	}
	// Second commit: everyone delivered; only the pending ones change.
	var second []Outcome
	for _, rc := range rcpts {
		second = append(second, Outcome{Rcpt: rc, State: Delivered})
		if _, ok := want[rc]; !ok {
			want[rc] = Delivered
		}
	}
	if err := db.RecordOutcomes(ctx, "d1", second, now); err != nil {
		t.Fatal(err)
	}

	rows, err := db.db.QueryContext(ctx, `SELECT rcpt, state, detail FROM delivery_recipients WHERE delivery_id = 'd1'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var (
			rc, detail string
			st         State
		)
		if err := rows.Scan(&rc, &st, &detail); err != nil {
			t.Fatal(err)
		}
		seen++
		if st != want[rc] {
			t.Errorf("%s: state %d, want %d", rc, st, want[rc])
		}
		if st == Failed && detail != fmt.Sprintf("550 5.1.1 reply %d", indexOf(rcpts, rc)%2) {
			t.Errorf("%s: detail %q", rc, detail)
		}
	}
	if seen != n {
		t.Errorf("%d rows, want %d", seen, n)
	}
	c, err := db.DeliveryCounts(ctx, "d1")
	if err != nil || c.Pending != 0 || c.Delivered+c.Failed != n {
		t.Errorf("counts = %+v, %v", c, err)
	}
}

// TestRecordOutcomesNotFinal refuses a batch with a pending outcome and
// records nothing of it.
func TestRecordOutcomesNotFinal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	r, _ := newRecord(1)
	add(t, db, r)
	d := Delivery{ID: "d1", List: "board@example.org", TokenID: r.ID, Sender: "alice@example.net", Created: time.Now()}
	if _, _, err := db.BeginDelivery(ctx, d, []string{"a@example.com", "b@example.com"}); err != nil {
		t.Fatal(err)
	}
	err := db.RecordOutcomes(ctx, "d1", []Outcome{{Rcpt: "a@example.com", State: Delivered}, {Rcpt: "b@example.com", State: Pending}}, time.Now())
	if err == nil {
		t.Fatal("a pending outcome was accepted")
	}
	if c, _ := db.DeliveryCounts(ctx, "d1"); c.Pending != 2 {
		t.Errorf("counts = %+v after a refused batch, want 2 pending", c)
	}
}

func indexOf(xs []string, x string) int {
	i, _ := slices.BinarySearch(xs, x)
	return i
}
