package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
)

// testWebhookClaimsTwoHosts: N due messages, two hosts with two senders
// each claiming at once — every message is claimed exactly once. A claim
// whose lease ran out (its host died mid-send) is anyone's again; a
// released claim is due at once.
func testWebhookClaimsTwoHosts(t *testing.T, b Backend) {
	ctx := context.Background()
	hosts := open(t, b, 2)
	now := time.Now().UTC().Truncate(time.Second)
	const url = "https://hook.example/"
	for _, db := range hosts { // both hosts configure the endpoint
		if err := db.SetWebhookEndpoints(ctx, []store.WebhookEndpoint{{URL: url, Events: []string{store.EventTokenSpent}}}, now); err != nil {
			t.Fatal(err)
		}
	}
	const n = 30
	r, _ := record("board@example.org", n)
	add(t, hosts[0], r)
	for i := range n {
		d := store.Delivery{ID: fmt.Sprintf("d%02d", i), List: r.List, TokenID: r.ID, Created: now}
		if _, _, err := hosts[i%2].BeginDelivery(ctx, d, []string{"x@example.org"}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		claims = map[int64][]string{}
	)
	for h, db := range hosts {
		for w := range 2 {
			owner := fmt.Sprintf("host-%d/%d", h, w)
			wg.Go(func() {
				for {
					due, err := db.DueWebhooks(ctx, url, now, 7)
					if err != nil {
						t.Error(err)
						return
					}
					if len(due) == 0 {
						return
					}
					for _, m := range due {
						ok, err := db.ClaimWebhook(ctx, url, m.Seq, owner, now, now.Add(time.Minute))
						if err != nil {
							t.Error(err)
							return
						}
						if ok {
							mu.Lock()
							claims[m.Seq] = append(claims[m.Seq], owner)
							mu.Unlock()
						}
					}
				}
			})
		}
	}
	wg.Wait()
	if len(claims) != n {
		t.Errorf("%d messages claimed, want %d", len(claims), n)
	}
	for seq, by := range claims {
		if len(by) != 1 {
			t.Errorf("message %d claimed %d times: %v", seq, len(by), by)
		}
	}

	// host-0/0 dies holding its claims: nothing is due until the lease
	// ends, then the other host takes them over.
	if due, _ := hosts[1].DueWebhooks(ctx, url, now.Add(59*time.Second), n); len(due) != 0 {
		t.Errorf("%d claimed messages due before their lease ended", len(due))
	}
	after := now.Add(time.Minute)
	due, err := hosts[1].DueWebhooks(ctx, url, after, n)
	if err != nil || len(due) != n {
		t.Fatalf("after the leases: %d due, %v; want %d", len(due), err, n)
	}
	m := due[0]
	if ok, err := hosts[1].ClaimWebhook(ctx, url, m.Seq, "host-1/new", after, after.Add(time.Minute)); !ok || err != nil {
		t.Fatalf("taking over an expired claim: %v, %v", ok, err)
	}
	// The former holder's late failure changes nothing; its late success
	// is recorded (the message did go out).
	old := claims[m.Seq][0]
	if err := hosts[0].RecordWebhookAttempt(ctx, url, m.Seq, store.WebhookAttempt{Owner: old, Err: "timeout", Next: after}, after); err != nil {
		t.Fatal(err)
	}
	if due, _ := hosts[0].DueWebhooks(ctx, url, after.Add(59*time.Second), n); len(due) != n-1 {
		t.Errorf("a stale failure moved the new holder's claim: %d due, want %d", len(due), n-1)
	}
	// Released by the new holder (shutting down): due at once.
	if err := hosts[0].ReleaseWebhook(ctx, url, m.Seq, old, after); err != nil { // not its claim: nothing
		t.Fatal(err)
	}
	if ok, _ := hosts[0].ClaimWebhook(ctx, url, m.Seq, "host-0/x", after, after.Add(time.Minute)); ok {
		t.Error("a release by the former holder freed the new holder's claim")
	}
	if err := hosts[1].ReleaseWebhook(ctx, url, m.Seq, "host-1/new", after); err != nil {
		t.Fatal(err)
	}
	if ok, err := hosts[0].ClaimWebhook(ctx, url, m.Seq, "host-0/x", after, after.Add(time.Minute)); !ok || err != nil {
		t.Errorf("claiming a released message: %v, %v", ok, err)
	}
	if err := hosts[1].RecordWebhookAttempt(ctx, url, m.Seq, store.WebhookAttempt{Owner: "host-1/new", Delivered: true}, after); err != nil {
		t.Fatal(err)
	}
	if pending, _, _ := hosts[0].WebhookStats(ctx); pending != n-1 {
		t.Errorf("%d pending after a delivery, want %d", pending, n-1)
	}
}
