package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/restrictedmail/restrictedmail/store"
)

// StatsSource is what the metrics read from the store at scrape time;
// *store.DB satisfies it.
type StatsSource interface {
	Stats(ctx context.Context, now time.Time) (store.Stats, error)
}

// scrapeTimeout bounds the store's part of a scrape (Prometheus's default
// scrape timeout is 10s).
const scrapeTimeout = 5 * time.Second

// storeCollector reads the counts at each scrape, so that tokens issued by
// the `token` command (another process) are counted too.
type storeCollector struct {
	src                           StatsSource
	up, issued, spent, active     *prometheus.Desc
	pendingRcpts, pendingDelivers *prometheus.Desc
}

func newStoreCollector(src StatsSource) *storeCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &storeCollector{
		src:    src,
		up:     desc("store_up", "1 when the store answered the scrape's queries, else 0 (the store's metrics are missing then)."),
		issued: desc("tokens_issued_total", "Tokens issued for a restricted address (list), revoked and used ones included.", "list"),
		spent:  desc("tokens_spent_total", "Token uses spent for a restricted address (list): one per delivery.", "list"),
		active: desc("tokens_active", "Tokens of a restricted address (list) that could still be used: not revoked, not expired, uses left.", "list"),
		pendingRcpts: desc("recipients_pending",
			"Recipients whose copy has not been taken or refused yet; they are sent on Postfix's next hand-over."),
		pendingDelivers: desc("deliveries_pending", "Deliveries with pending recipients (messages Postfix still holds for us)."),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.issued, c.spent, c.active, c.pendingRcpts, c.pendingDelivers} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st, err := c.src.Stats(ctx, time.Now())
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		ch <- prometheus.NewInvalidMetric(c.pendingRcpts, err) // logged by the handler
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, t := range st.Tokens {
		ch <- prometheus.MustNewConstMetric(c.issued, prometheus.CounterValue, float64(t.Issued), t.List)
		ch <- prometheus.MustNewConstMetric(c.spent, prometheus.CounterValue, float64(t.Spent), t.List)
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(t.Active), t.List)
	}
	ch <- prometheus.MustNewConstMetric(c.pendingRcpts, prometheus.GaugeValue, float64(st.PendingRecipients))
	ch <- prometheus.MustNewConstMetric(c.pendingDelivers, prometheus.GaugeValue, float64(st.PendingDeliveries))
}
