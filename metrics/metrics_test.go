package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/promtext"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/store"
)

type fakeStats struct {
	st  store.Stats
	err error
}

func (f fakeStats) Stats(context.Context, time.Time) (store.Stats, error) { return f.st, f.err }

func scrape(t *testing.T, m *Metrics) promtext.Samples {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	s, err := promtext.Fetch(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMilterPathAllocatesNothing: the observer methods the milter calls for
// every message allocate nothing.
func TestMilterPathAllocatesNothing(t *testing.T) {
	m := New(nil, nil)
	if n := testing.AllocsPerRun(1000, func() {
		m.MilterOrdinary()
		m.MilterVerdict(policy.NoToken)
		m.MilterVerdict(policy.Reason(999))
		m.MilterTokenCheck(3 * time.Millisecond)
	}); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

func TestObserversAndStore(t *testing.T) {
	t.Parallel()
	m := New(fakeStats{st: store.Stats{
		Tokens:            []store.TokenStats{{List: "board@example.org", Issued: 5, Spent: 3, Active: 2}},
		PendingRecipients: 4, PendingDeliveries: 1,
	}}, nil)
	m.MilterOrdinary()
	m.MilterVerdict(policy.Pass)
	m.MilterVerdict(policy.Expired)
	m.MilterVerdict(policy.Reason(999)) // a reason this build has no name for
	m.MilterTokenCheck(time.Millisecond)
	m.LMTPDelivery("delivered", time.Second)
	m.LMTPDelivery("deferred", time.Second)
	m.LMTPRecipients(3, 1, 2)
	m.RelayConnect(time.Millisecond, nil)
	m.RelayConnect(time.Millisecond, &relay.Error{Temporary: true, Stage: relay.StageTLS})
	m.RelayTransaction(time.Millisecond, 2, []*relay.Error{{Stage: relay.StageRcpt}, {Temporary: true, Stage: relay.StageRcpt}})
	m.RelayTransaction(time.Millisecond, 0, []*relay.Error{{Temporary: true, Stage: relay.StageMail}})
	m.Reload(true)
	m.Reload(false)
	s := scrape(t, m)
	for key, want := range map[string]float64{
		promtext.Key("restrictedmail_milter_verdicts_total", "reason", "ordinary"):               1,
		promtext.Key("restrictedmail_milter_verdicts_total", "reason", "pass"):                   1,
		promtext.Key("restrictedmail_milter_verdicts_total", "reason", "expired"):                1,
		promtext.Key("restrictedmail_milter_verdicts_total", "reason", "other"):                  1,
		promtext.Key("restrictedmail_milter_verdicts_total", "reason", "no_token"):               0,
		"restrictedmail_milter_token_check_duration_seconds_count":                               1,
		promtext.Key("restrictedmail_lmtp_deliveries_total", "outcome", "delivered"):             1,
		promtext.Key("restrictedmail_lmtp_deliveries_total", "outcome", "deferred"):              1,
		promtext.Key("restrictedmail_lmtp_deliveries_total", "outcome", "refused"):               0,
		"restrictedmail_lmtp_delivery_duration_seconds_count":                                    2,
		promtext.Key("restrictedmail_recipients_total", "outcome", "delivered"):                  3,
		promtext.Key("restrictedmail_recipients_total", "outcome", "failed"):                     1,
		promtext.Key("restrictedmail_recipients_total", "outcome", "deferred"):                   2,
		promtext.Key("restrictedmail_relay_connections_total", "result", "ok"):                   1,
		promtext.Key("restrictedmail_relay_connections_total", "result", "failed"):               1,
		promtext.Key("restrictedmail_relay_transactions_total", "result", "delivered"):           1,
		promtext.Key("restrictedmail_relay_transactions_total", "result", "failed"):              1,
		promtext.Key("restrictedmail_relay_errors_total", "class", "temporary", "stage", "tls"):  1,
		promtext.Key("restrictedmail_relay_errors_total", "class", "permanent", "stage", "rcpt"): 1,
		promtext.Key("restrictedmail_relay_errors_total", "class", "temporary", "stage", "rcpt"): 1,
		promtext.Key("restrictedmail_relay_errors_total", "class", "temporary", "stage", "mail"): 1,
		"restrictedmail_relay_transaction_duration_seconds_count":                                2,
		promtext.Key("restrictedmail_config_reloads_total", "result", "ok"):                      1,
		promtext.Key("restrictedmail_config_reloads_total", "result", "refused"):                 1,
		promtext.Key("restrictedmail_tokens_issued_total", "list", "board@example.org"):          5,
		promtext.Key("restrictedmail_tokens_spent_total", "list", "board@example.org"):           3,
		promtext.Key("restrictedmail_tokens_active", "list", "board@example.org"):                2,
		"restrictedmail_recipients_pending":                                                      4,
		"restrictedmail_deliveries_pending":                                                      1,
		"restrictedmail_store_up":                                                                1,
	} {
		if got, ok := s[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if ts := s.Get("restrictedmail_config_last_reload_success_timestamp_seconds"); ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last reload timestamp %v", ts)
	}
}

// TestStoreDown: a failing store costs its own metrics, not the scrape.
func TestStoreDown(t *testing.T) {
	t.Parallel()
	m := New(fakeStats{err: errors.New("database is locked")}, nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("scrape with the store down: %s", resp.Status)
	}
	s := scrape(t, m)
	if s.Get("restrictedmail_store_up") != 0 || !s.Has("restrictedmail_store_up") || s.Has("restrictedmail_recipients_pending") {
		t.Errorf("store down: store_up %v, pending present %v", s.Get("restrictedmail_store_up"), s.Has("restrictedmail_recipients_pending"))
	}
	if !s.Has("restrictedmail_milter_verdicts_total", "reason", "pass") {
		t.Errorf("the other metrics are missing")
	}
}
