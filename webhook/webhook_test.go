package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/pgtest"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

type received struct {
	id, ts, sig, typ string
	body             []byte
}

// TestOutboxToEndpoint: a token spent and a delivery completed with a
// failed recipient queue their events in the store; the dispatcher sends
// them signed, in order, retries an endpoint that fails, resumes after a
// new dispatcher takes over (a restart), and records them delivered.
func TestOutboxToEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var (
		mu   sync.Mutex
		got  []received
		fail = 3
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct{ Type string }
		json.Unmarshal(body, &ev)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, received{r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), ev.Type, body})
		if fail > 0 {
			fail--
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	secret := []byte("0123456789abcdef")
	ep := Endpoint{URL: srv.URL, Secret: secret, Events: store.EventTypes, Timeout: 5 * time.Second, Backoff: 10 * time.Millisecond, GiveUpAfter: time.Hour}

	d1 := New(Options{Store: db, Poll: 20 * time.Millisecond})
	if err := d1.SetEndpoints(ctx, []Endpoint{ep}); err != nil {
		t.Fatal(err)
	}
	d1.Stop() // nothing sent yet: the queue waits for the next one
	now := time.Now()
	rec := token.Record{ID: "tok1", Hash: token.HashOf("x"), List: "board@example.org", Created: now, UsesAllowed: 2, Owner: "u", ExternalRef: "r"}
	if err := db.AddToken(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.BeginDelivery(ctx, store.Delivery{ID: "d1", List: rec.List, TokenID: "tok1", Sender: "a@example.net", Created: now},
		[]string{"ok@example.net", "bad@example.net"}); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordOutcomes(ctx, "d1", []store.Outcome{{Rcpt: "ok@example.net", State: store.Delivered},
		{Rcpt: "bad@example.net", State: store.Failed, Detail: "550 5.1.1 no such user"}}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FinishDelivery(ctx, "d1", "", now); err != nil {
		t.Fatal(err)
	}
	// Finishing again adds nothing.
	if _, err := db.FinishDelivery(ctx, "d1", "", now); err != nil {
		t.Fatal(err)
	}
	if pending, _, _ := db.WebhookStats(ctx); pending != 3 {
		t.Fatalf("%d messages queued, want 3", pending)
	}
	d2 := New(Options{Store: db, Poll: 20 * time.Millisecond})
	if err := d2.SetEndpoints(ctx, []Endpoint{ep}); err != nil {
		t.Fatal(err)
	}
	defer d2.Stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pending, failed, err := db.WebhookStats(ctx)
		if err == nil && pending == 0 {
			if failed != 0 {
				t.Errorf("%d failed", failed)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d pending", pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	ids := map[string]string{}
	acked := map[string]int{}
	for i, r := range got {
		ts, _ := strconv.ParseInt(r.ts, 10, 64)
		if r.sig != Sign(secret, r.id, ts, r.body) {
			t.Errorf("request %d: bad signature", i)
		}
		if prev, ok := ids[r.typ]; ok && prev != r.id {
			t.Errorf("%s sent under two ids", r.typ)
		}
		ids[r.typ] = r.id
		if i >= 3 {
			acked[r.typ]++
		}
	}
	for _, typ := range store.EventTypes {
		if acked[typ] != 1 {
			t.Errorf("%s acknowledged %d times", typ, acked[typ])
		}
	}
	if got[0].typ != store.EventTokenSpent {
		t.Errorf("first event %s, want token.spent (the queue's order)", got[0].typ)
	}
	var ev store.Event
	for _, r := range got {
		if r.typ == store.EventFailedRecipients {
			json.Unmarshal(r.body, &ev)
		}
	}
	if len(ev.Data.Failed) != 1 || ev.Data.Failed[0].Address != "bad@example.net" || ev.Data.Owner != "u" || ev.Data.ExternalRef != "r" {
		t.Errorf("failed_recipients event %+v", ev.Data)
	}
}

func TestBackoff(t *testing.T) {
	for attempts, want := range map[int]time.Duration{0: 5 * time.Second, 1: 10 * time.Second, 3: 40 * time.Second, 20: MaxBackoff} {
		if got := backoff(5*time.Second, attempts); got != want {
			t.Errorf("backoff after %d = %v, want %v", attempts, got, want)
		}
	}
}

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestTwoHostsSendEachEventOnce: two dispatchers (two hosts) on one store,
// SQLite or PostgreSQL, both configured with the endpoint, send each
// queued event once between them, not once each; the second host's start
// does not unsubscribe an endpoint only the first configures.
func TestTwoHostsSendEachEventOnce(t *testing.T) {
	t.Parallel()
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "state.db")
		testTwoHosts(t, func() (*store.DB, error) { return store.Open(context.Background(), path) })
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		t.Parallel()
		url := pgtest.Shared(t).NewDB(t)
		testTwoHosts(t, func() (*store.DB, error) {
			return store.OpenPostgres(context.Background(), store.PostgresOptions{URL: url})
		})
	})
}

func testTwoHosts(t *testing.T, open func() (*store.DB, error)) {
	ctx := context.Background()
	var hosts [2]*store.DB
	for i := range hosts {
		db, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		hosts[i] = db
	}
	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
	}))
	defer srv.Close()
	lonely := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer lonely.Close()
	ep := Endpoint{URL: srv.URL, Secret: []byte("0123456789abcdef"), Events: store.EventTypes, Timeout: 5 * time.Second, Backoff: 10 * time.Millisecond, GiveUpAfter: time.Hour}
	only0 := Endpoint{URL: lonely.URL, Secret: []byte("0123456789abcdef"), Events: []string{store.EventTokenSpent}, Timeout: 5 * time.Second, GiveUpAfter: time.Hour}
	for i, db := range hosts {
		eps := []Endpoint{ep}
		if i == 0 {
			eps = append(eps, only0)
		}
		d := New(Options{Store: db, Poll: 5 * time.Millisecond, Owner: fmt.Sprintf("host-%d", i)})
		if err := d.SetEndpoints(ctx, eps); err != nil {
			t.Fatal(err)
		}
		defer d.Stop()
	}
	const n = 40
	now := time.Now()
	rec := token.Record{ID: "tok1", Hash: token.HashOf("x"), List: "board@example.org", Created: now, UsesAllowed: n}
	if err := hosts[0].AddToken(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		d := store.Delivery{ID: fmt.Sprintf("d%02d", i), List: rec.List, TokenID: rec.ID, Sender: "a@example.net", Created: now}
		if _, _, err := hosts[i%2].BeginDelivery(ctx, d, []string{"ok@example.net"}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		pending, failed, err := hosts[1].WebhookStats(ctx)
		if err == nil && pending == 0 {
			if failed != 0 {
				t.Errorf("%d failed", failed)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d pending", pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Errorf("%d distinct events received, want %d", len(got), n)
	}
	for id, k := range got {
		if k != 1 {
			t.Errorf("event %s posted %d times, want once", id, k)
		}
	}
}
