package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// WebhookStatsSource is what the webhook metrics read from the store at
// scrape time; *store.DB satisfies it.
type WebhookStatsSource interface {
	WebhookStats(ctx context.Context) (pending, failed int64, err error)
}

// WebhookMetrics observes the webhook dispatcher (webhook.Observer).
type WebhookMetrics struct {
	attempts *prometheus.CounterVec
}

// WebhookAttempt counts one attempt to send a webhook message.
func (w *WebhookMetrics) WebhookAttempt(result string) { w.attempts.WithLabelValues(result).Inc() }

// Webhooks registers the webhook metrics: attempts by result, and the
// messages pending and given up on, read from src at scrape time (so they
// survive restarts, as the queue does).
func (m *Metrics) Webhooks(src WebhookStatsSource) *WebhookMetrics {
	w := &WebhookMetrics{attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "webhook_attempts_total",
		Help: `Attempts to send a webhook message, by result: "delivered" (the endpoint answered 2xx), "failed" (retried later), "gave_up" (failed for good after give_up_after).`,
	}, []string{"result"})}
	for _, r := range []string{"delivered", "failed", "gave_up"} {
		w.attempts.WithLabelValues(r)
	}
	m.reg.MustRegister(w.attempts, &webhookCollector{
		src: src,
		pending: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "webhooks_pending"),
			"Webhook messages queued and not delivered yet (from the store).", nil, nil),
		failed: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "webhooks_failed"),
			"Webhook messages given up on after give_up_after, kept 30 days (from the store).", nil, nil),
	})
	return w
}

type webhookCollector struct {
	src             WebhookStatsSource
	pending, failed *prometheus.Desc
}

func (c *webhookCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.pending; ch <- c.failed }

func (c *webhookCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	pending, failed, err := c.src.WebhookStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.pending, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(failed))
}
