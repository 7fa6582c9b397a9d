package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
)

// testBounceTransitions: a bounce moves only a recipient the relay took,
// of the delivery its tag names; a delay is superseded by a failure or a
// late success, never the reverse; an address that was no recipient, or a
// tag nobody has, changes nothing.
func testBounceTransitions(t *testing.T, bk Backend) {
	ctx := context.Background()
	db := open1(t, bk)
	r, _ := record("board@example.org", 1)
	add(t, db, r)
	now := time.Now()
	d := store.Delivery{ID: "d1", List: "board@example.org", TokenID: r.ID, Sender: "alice@example.net", Created: now, Tag: "abcdefghij", Report: store.ReportSummary}
	rcpts := []string{"a@example.net", "B@example.com", "c@example.com", "d@example.com", "e@example.com"}
	if _, _, err := db.BeginDelivery(ctx, d, rcpts); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DeliveryByTag(ctx, "zzzzzzzzzz"); err != store.ErrNoDelivery {
		t.Errorf("unknown tag: %v, want ErrNoDelivery", err)
	}
	if got, err := db.DeliveryByTag(ctx, "abcdefghij"); err != nil || got.ID != "d1" || got.Report != store.ReportSummary {
		t.Fatalf("DeliveryByTag = %+v, %v", got, err)
	}
	// e@ is refused by the relay; the others delivered.
	outs := []store.Outcome{{Rcpt: "e@example.com", State: store.Failed, Detail: "550 5.7.1 refused"}}
	for _, rc := range rcpts[:4] {
		outs = append(outs, store.Outcome{Rcpt: rc, State: store.Delivered})
	}
	if err := db.RecordOutcomes(ctx, "d1", outs, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FinishDelivery(ctx, "d1", "", now); err != nil {
		t.Fatal(err)
	}
	apply := func(bs ...store.Bounce) int {
		t.Helper()
		got, err := db.RecordBounces(ctx, "d1", bs, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if n := apply(store.Bounce{Rcpt: "stranger@example.com", Kind: store.BounceFailed, Status: "5.1.1"}); n != 0 {
		t.Errorf("a stranger changed %d recipients", n)
	}
	if n := apply(store.Bounce{Rcpt: "e@example.com", Kind: store.BounceFailed, Status: "5.1.1"}); n != 0 {
		t.Errorf("a bounce for a recipient the relay refused changed it")
	}
	if n := apply(store.Bounce{Rcpt: "b@EXAMPLE.com", Kind: store.BounceFailed, Status: "5.1.1", Detail: "550 5.1.1 unknown"},
		store.Bounce{Rcpt: "a@example.net", Kind: store.BounceDelayed, Status: "4.4.1"},
		store.Bounce{Rcpt: "c@example.com", Kind: store.BounceDelayed, Status: "4.4.1"},
		store.Bounce{Rcpt: "d@example.com", Kind: store.BounceDelivered, Status: "2.0.0"}); n != 3 {
		t.Errorf("%d changed, want 3 (a success without a delay changes nothing)", n)
	}
	if n := apply(store.Bounce{Rcpt: "B@example.com", Kind: store.BounceDelayed, Status: "4.4.1"}); n != 0 {
		t.Errorf("a delay superseded a failure")
	}
	if n := apply(store.Bounce{Rcpt: "a@example.net", Kind: store.BounceFailed, Status: "5.2.2"},
		store.Bounce{Rcpt: "c@example.com", Kind: store.BounceDelivered, Status: "2.0.0"}); n != 2 {
		t.Errorf("a failure or success did not supersede a delay (%d)", n)
	}
	dd, err := db.DeliveryDetailOf(ctx, "d1", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]store.State{"a@example.net": store.Bounced, "B@example.com": store.Bounced, "c@example.com": store.Delivered, "d@example.com": store.Delivered, "e@example.com": store.Failed}
	for _, rs := range dd.Recipients {
		if rs.State != want[rs.Rcpt] {
			t.Errorf("%s is %s, want %s", rs.Rcpt, rs.State, want[rs.Rcpt])
		}
	}
	if c := dd.Counts; c.Delivered != 2 || c.Failed != 3 || c.Bounced != 2 || c.Delayed != 0 {
		t.Errorf("counts %+v", c)
	}
	bouncing, err := db.BouncingRecipients(ctx, "board@example.org", 10, 1)
	if err != nil || len(bouncing) != 2 || bouncing[0].Rcpt != "B@example.com" && bouncing[0].Rcpt != "a@example.net" {
		t.Errorf("BouncingRecipients = %+v, %v", bouncing, err)
	}
	// The web page's overview: refused by the relay or bounced later,
	// both failed.
	if failed, err := db.FailedRecipients(ctx, now.Add(-time.Hour)); err != nil || failed["board@example.org"] != 3 {
		t.Errorf("FailedRecipients = %v, %v; want 3 for board@example.org", failed, err)
	}
	if failed, err := db.FailedRecipients(ctx, now.Add(time.Hour)); err != nil || len(failed) != 0 {
		t.Errorf("FailedRecipients since a later time = %v, %v; want none", failed, err)
	}
}

// testReportQueue: completing a delivery that asked for a report
// schedules one that the other host sees; claims from both hosts at once:
// exactly one wins; bounces after the report was sent schedule one follow-up,
// never two; a delivery from the null sender gets none.
func testReportQueue(t *testing.T, bk Backend) {
	ctx := context.Background()
	dbs := open(t, bk, 2)
	db, db2 := dbs[0], dbs[1]
	r, _ := record("board@example.org", 3)
	add(t, db, r)
	now := time.Now()
	for _, d := range []store.Delivery{
		{ID: "rep", List: "board@example.org", TokenID: r.ID, Sender: "alice@example.net", Created: now, Tag: "tag0000001", Report: store.ReportSummary},
		{ID: "null", List: "board@example.org", TokenID: r.ID, Sender: "", Created: now, Tag: "tag0000002", Report: store.ReportSummary},
		{ID: "none", List: "board@example.org", TokenID: r.ID, Sender: "bob@example.net", Created: now, Tag: "tag0000003", Report: store.ReportNone},
	} {
		if _, _, err := db.BeginDelivery(ctx, d, []string{"a@example.net", "b@example.net"}); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordOutcomes(ctx, d.ID, []store.Outcome{{Rcpt: "a@example.net", State: store.Delivered}, {Rcpt: "b@example.net", State: store.Delivered}}, now); err != nil {
			t.Fatal(err)
		}
		if _, err := db.FinishDelivery(ctx, d.ID, "", now); err != nil {
			t.Fatal(err)
		}
	}
	due, err := db2.DueReports(ctx, now, 10)
	if err != nil || len(due) != 1 || due[0].DeliveryID != "rep" || due[0].Seq != 0 {
		t.Fatalf("due = %+v, %v; want the first report of rep only", due, err)
	}
	// Both hosts' workers claim it at once: exactly one wins.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range 8 {
		wg.Go(func() {
			ok, err := dbs[i%2].ClaimReport(ctx, due[0], now, now.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d claims of one report succeeded, want 1", wins)
	}
	if due, _ := db2.DueReports(ctx, now.Add(59*time.Second), 10); len(due) != 0 {
		t.Fatalf("a claimed report is due again before its lease ends: %+v", due)
	}
	// A bounce before the report is sent goes into it: no follow-up.
	if _, err := db.RecordBounces(ctx, "rep", []store.Bounce{{Rcpt: "a@example.net", Kind: store.BounceDelayed, Status: "4.4.1"}}, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishReport(ctx, due[0], true, "", now); err != nil {
		t.Fatal(err)
	}
	if due, _ := db.DueReports(ctx, now.Add(2*time.Hour), 10); len(due) != 0 {
		t.Fatalf("due after the report: %+v", due)
	}
	for range 2 {
		if _, err := db.RecordBounces(ctx, "rep", []store.Bounce{{Rcpt: "a@example.net", Kind: store.BounceFailed, Status: "5.1.1"}}, now, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if due, _ := db.DueReports(ctx, now, 10); len(due) != 0 {
		t.Errorf("the follow-up is due before its window: %+v", due)
	}
	due, _ = db.DueReports(ctx, now.Add(time.Hour), 10)
	if len(due) != 1 || due[0].Seq != 1 {
		t.Fatalf("follow-up: %+v", due)
	}
	if err := db.FinishReport(ctx, due[0], true, "", now); err != nil {
		t.Fatal(err)
	}
	// A bounce after the follow-up is recorded, and schedules nothing more.
	if got, err := db.RecordBounces(ctx, "rep", []store.Bounce{{Rcpt: "b@example.net", Kind: store.BounceFailed, Status: "5.1.1"}}, now, 0); err != nil || len(got) != 1 {
		t.Fatalf("late bounce: %v, %v", got, err)
	}
	if due, _ := db.DueReports(ctx, now.Add(48*time.Hour), 10); len(due) != 0 {
		t.Errorf("a second follow-up: %+v", due)
	}
}
