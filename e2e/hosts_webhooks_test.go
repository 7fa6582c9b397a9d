package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTwoHostsWebhooksOnce(t *testing.T) {
	t.Parallel()
	testWebhooksOnceAcrossHosts(t, sharedSQLite)
}

func TestTwoHostsPostgresWebhooksOnce(t *testing.T) {
	t.Parallel()
	testWebhooksOnceAcrossHosts(t, sharedPostgres)
}

// testWebhooksOnceAcrossHosts: both hosts configure the same webhook
// endpoint; a three-use token sent ten times across both spends three
// uses and completes three deliveries, and the portal receives each of
// those six events once — one host sends each, not both, although the
// portal answers slowly — every one validly signed.
func testWebhooksOnceAcrossHosts(t *testing.T, store storeFor) {
	h := newHook(t, 0)
	// A slow portal keeps each message in flight for a while: time for
	// the other host to find it due, unless it was claimed.
	h.delay = 300 * time.Millisecond
	secret := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(secret, []byte("whsec_"+base64.StdEncoding.EncodeToString(h.secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := worldOpts{milter: true}
	o.extra = fmt.Sprintf("[[webhooks]]\nurl = %q\nsecret_file = %q\nevents = [\"token.spent\", \"delivery.completed\"]\n", h.srv.URL+"/hooks/rm", secret)
	m := twoHosts(t, store, "two-hosts-webhooks", o)
	tok := m.issue(3)
	m.concurrently(10, tok)
	m.settle(0)
	m.settle(1)
	h.waitFor(t, 6, waitMail)
	m.report(3, 0) // stops both daemons: every request they made has arrived
	h.mu.Lock()
	defer h.mu.Unlock()
	ids, types := map[string]int{}, map[string]int{}
	for i, r := range h.reqs {
		if !h.valid(r) {
			t.Errorf("request %d: bad signature", i)
		}
		var ev struct{ Type string }
		if err := json.Unmarshal(r.body, &ev); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		ids[r.id]++
		if ids[r.id] == 1 {
			types[ev.Type]++
		}
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("event %s posted %d times, want once", id, n)
		}
	}
	if len(h.reqs) != 6 || types["token.spent"] != 3 || types["delivery.completed"] != 3 {
		t.Errorf("%d requests, events %v; want 3 token.spent and 3 delivery.completed, each once", len(h.reqs), types)
	}
}
