package store

import (
	"context"
	"testing"
	"time"
)

// TestBounceTransitions: a bounce moves only a recipient the relay took,
// of the delivery its tag names; a delay is superseded by a failure or a
// late success, never the reverse; an address that was no recipient, or a
// tag nobody has, changes nothing.
func TestBounceTransitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := open(t)
	r, _ := newRecord(1)
	add(t, db, r)
	now := time.Now()
	d := Delivery{ID: "d1", List: "board@example.org", TokenID: r.ID, Sender: "alice@example.net", Created: now, Tag: "abcdefghij", Report: ReportSummary}
	rcpts := []string{"a@example.net", "B@example.com", "c@example.com", "d@example.com", "e@example.com"}
	if _, _, err := db.BeginDelivery(ctx, d, rcpts); err != nil {
		t.Fatal(err)
	}
	if _, err := db.DeliveryByTag(ctx, "zzzzzzzzzz"); err != ErrNoDelivery {
		t.Errorf("unknown tag: %v, want ErrNoDelivery", err)
	}
	if got, err := db.DeliveryByTag(ctx, "abcdefghij"); err != nil || got.ID != "d1" || got.Report != ReportSummary {
		t.Fatalf("DeliveryByTag = %+v, %v", got, err)
	}
	// e@ is refused by the relay; the others delivered.
	outs := []Outcome{{Rcpt: "e@example.com", State: Failed, Detail: "550 5.7.1 refused"}}
	for _, rc := range rcpts[:4] {
		outs = append(outs, Outcome{Rcpt: rc, State: Delivered})
	}
	if err := db.RecordOutcomes(ctx, "d1", outs, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FinishDelivery(ctx, "d1", "", now); err != nil {
		t.Fatal(err)
	}
	apply := func(bs ...Bounce) int {
		t.Helper()
		got, err := db.RecordBounces(ctx, "d1", bs, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if n := apply(Bounce{Rcpt: "stranger@example.com", Kind: BounceFailed, Status: "5.1.1"}); n != 0 {
		t.Errorf("a stranger changed %d recipients", n)
	}
	if n := apply(Bounce{Rcpt: "e@example.com", Kind: BounceFailed, Status: "5.1.1"}); n != 0 {
		t.Errorf("a bounce for a recipient the relay refused changed it")
	}
	if n := apply(Bounce{Rcpt: "b@EXAMPLE.com", Kind: BounceFailed, Status: "5.1.1", Detail: "550 5.1.1 unknown"},
		Bounce{Rcpt: "a@example.net", Kind: BounceDelayed, Status: "4.4.1"},
		Bounce{Rcpt: "c@example.com", Kind: BounceDelayed, Status: "4.4.1"},
		Bounce{Rcpt: "d@example.com", Kind: BounceDelivered, Status: "2.0.0"}); n != 3 {
		t.Errorf("%d changed, want 3 (a success without a delay changes nothing)", n)
	}
	if n := apply(Bounce{Rcpt: "B@example.com", Kind: BounceDelayed, Status: "4.4.1"}); n != 0 {
		t.Errorf("a delay superseded a failure")
	}
	if n := apply(Bounce{Rcpt: "a@example.net", Kind: BounceFailed, Status: "5.2.2"},
		Bounce{Rcpt: "c@example.com", Kind: BounceDelivered, Status: "2.0.0"}); n != 2 {
		t.Errorf("a failure or success did not supersede a delay (%d)", n)
	}
	dd, err := db.DeliveryDetailOf(ctx, "d1", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]State{"a@example.net": Bounced, "B@example.com": Bounced, "c@example.com": Delivered, "d@example.com": Delivered, "e@example.com": Failed}
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
}

// TestReportQueue: completing a delivery that asked for a report
// schedules one, durably (a fresh handle on the file sees it); a claim is
// exclusive; bounces after the report was sent schedule one follow-up,
// never two; a delivery from the null sender gets none.
func TestReportQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, path := open(t)
	r, _ := newRecord(3)
	add(t, db, r)
	now := time.Now()
	for _, d := range []Delivery{
		{ID: "rep", List: "board@example.org", TokenID: r.ID, Sender: "alice@example.net", Created: now, Tag: "tag0000001", Report: ReportSummary},
		{ID: "null", List: "board@example.org", TokenID: r.ID, Sender: "", Created: now, Tag: "tag0000002", Report: ReportSummary},
		{ID: "none", List: "board@example.org", TokenID: r.ID, Sender: "bob@example.net", Created: now, Tag: "tag0000003", Report: ReportNone},
	} {
		if _, _, err := db.BeginDelivery(ctx, d, []string{"a@example.net", "b@example.net"}); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordOutcomes(ctx, d.ID, []Outcome{{Rcpt: "a@example.net", State: Delivered}, {Rcpt: "b@example.net", State: Delivered}}, now); err != nil {
			t.Fatal(err)
		}
		if _, err := db.FinishDelivery(ctx, d.ID, "", now); err != nil {
			t.Fatal(err)
		}
	}
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	due, err := db2.DueReports(ctx, now, 10)
	if err != nil || len(due) != 1 || due[0].DeliveryID != "rep" || due[0].Seq != 0 {
		t.Fatalf("due = %+v, %v; want the first report of rep only", due, err)
	}
	if ok, err := db.ClaimReport(ctx, due[0], now, now.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	if ok, _ := db2.ClaimReport(ctx, due[0], now, now.Add(time.Minute)); ok {
		t.Fatal("a second claim succeeded")
	}
	// A bounce before the report is sent goes into it: no follow-up.
	if _, err := db.RecordBounces(ctx, "rep", []Bounce{{Rcpt: "a@example.net", Kind: BounceDelayed, Status: "4.4.1"}}, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishReport(ctx, due[0], true, "", now); err != nil {
		t.Fatal(err)
	}
	if due, _ := db.DueReports(ctx, now.Add(2*time.Hour), 10); len(due) != 0 {
		t.Fatalf("due after the report: %+v", due)
	}
	for range 2 {
		if _, err := db.RecordBounces(ctx, "rep", []Bounce{{Rcpt: "a@example.net", Kind: BounceFailed, Status: "5.1.1"}}, now, time.Hour); err != nil {
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
	if got, err := db.RecordBounces(ctx, "rep", []Bounce{{Rcpt: "b@example.net", Kind: BounceFailed, Status: "5.1.1"}}, now, 0); err != nil || len(got) != 1 {
		t.Fatalf("late bounce: %v, %v", got, err)
	}
	if due, _ := db.DueReports(ctx, now.Add(48*time.Hour), 10); len(due) != 0 {
		t.Errorf("a second follow-up: %+v", due)
	}
}
