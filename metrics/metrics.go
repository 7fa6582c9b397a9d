// Package metrics exposes restrictedmail's Prometheus metrics. A Metrics
// satisfies the small observer interfaces that the milter, the LMTP
// endpoint and the relay client declare (milter.Observer, delivery.Observer,
// relay.Observer), so those packages never import Prometheus; the daemon
// wires them together and serves Handler on [http] listen.
//
// The milter calls its observer for every message Postfix receives, so
// that path must not allocate: every label combination it can use is
// resolved to its counter once, in New, and the hot methods only add to a
// resolved counter — never WithLabelValues per call.
//
// Token counts come from the store at scrape time (a custom collector):
// tokens are issued by `restrictedmail token issue`, another process, so
// counting in the daemon would miss them.
package metrics

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/milter"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/relay"
)

const namespace = "restrictedmail"

// Metrics is the registry of one daemon and the observers feeding it. It
// is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	milterVerdicts []prometheus.Counter // by policy.Reason
	milterOther    prometheus.Counter   // a reason this build has no name for
	milterOrdinary prometheus.Counter
	milterCheck    prometheus.Histogram

	lmtpDeliveries *prometheus.CounterVec
	lmtpDuration   prometheus.Histogram
	recipients     [3]prometheus.Counter // delivered, failed, deferred

	relayConnects  [2]prometheus.Counter // ok, failed
	relayTxns      [2]prometheus.Counter // delivered, failed
	relayErrors    *prometheus.CounterVec
	relayTxnLength prometheus.Histogram

	bounces *prometheus.CounterVec // list, kind (bounces.go)

	reloads    [2]prometheus.Counter // ok, refused
	lastReload prometheus.Gauge
}

// Compile-time checks: a Metrics is the observer of all three adapters.
var (
	_ milter.Observer   = (*Metrics)(nil)
	_ delivery.Observer = (*Metrics)(nil)
	_ relay.Observer    = (*Metrics)(nil)
)

// New returns the metrics of one daemon: its own registry (never the
// global default one), the Go runtime and process collectors, and the
// store's counts read through src at scrape time.
func New(src StatsSource, log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: log}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src != nil {
		m.reg.MustRegister(newStoreCollector(src))
	}

	verdicts := m.counterVec("milter_verdicts_total",
		`Milter decisions by reason: "ordinary" for a message without a restricted recipient (accepted at DATA), "pass" for restricted mail with a valid token, otherwise why it was refused ("no_token", "unknown_token", "expired", "used_up", "revoked", "wrong_sender", "wrong_list", "loop", "malformed") or deferred ("tempfail"). A recipient refused at RCPT counts as one decision.`,
		"reason")
	for r := policy.Reason(0); !strings.HasPrefix(r.String(), "reason("); r++ {
		m.milterVerdicts = append(m.milterVerdicts, verdicts.WithLabelValues(r.String()))
	}
	m.milterOther = verdicts.WithLabelValues("other")
	m.milterOrdinary = verdicts.WithLabelValues("ordinary")
	m.milterCheck = m.histogram("milter_token_check_duration_seconds",
		"Time the milter spent looking a token up in the store.",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20})

	m.lmtpDeliveries = m.counterVec("lmtp_deliveries_total",
		`Delivery attempts of the LMTP endpoint (one restricted address of one hand-over) by outcome: "delivered" (250), "deferred" (4xx: Postfix hands the message over again), "refused" (5xx).`,
		"outcome")
	for _, o := range []string{delivery.OutcomeDelivered, delivery.OutcomeDeferred, delivery.OutcomeRefused} {
		m.lmtpDeliveries.WithLabelValues(o) // present from the start, at 0
	}
	m.lmtpDuration = m.histogram("lmtp_delivery_duration_seconds",
		"Duration of a delivery attempt: checking, spending, rewriting, signing and the fan-out.",
		[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600})
	rcpts := m.counterVec("recipients_total",
		`Recipients' results: "delivered" (the relay took the copy), "failed" (refused for good, or given up after lmtp.give_up_after), "deferred" (a temporary failure; the recipient stays pending for the next hand-over).`,
		"outcome")
	for i, o := range []string{"delivered", "failed", "deferred"} {
		m.recipients[i] = rcpts.WithLabelValues(o)
	}

	conns := m.counterVec("relay_connections_total", `Connection attempts to the relay by result ("ok", "failed").`, "result")
	m.relayConnects = [2]prometheus.Counter{conns.WithLabelValues("ok"), conns.WithLabelValues("failed")}
	txns := m.counterVec("relay_transactions_total",
		`SMTP transactions with the relay by result: "delivered" when the relay took the copy for at least one recipient, else "failed".`, "result")
	m.relayTxns = [2]prometheus.Counter{txns.WithLabelValues("delivered"), txns.WithLabelValues("failed")}
	m.relayErrors = m.counterVec("relay_errors_total",
		`Relay errors by class ("temporary", "permanent") and stage ("connect", "tls", "helo", "auth", "mail", "rcpt", "data"); each error once, however many recipients it failed.`,
		"class", "stage")
	m.relayTxnLength = m.histogram("relay_transaction_duration_seconds",
		"Duration of one SMTP transaction with the relay, MAIL FROM to the reply after the final dot.",
		[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300})

	m.bounces = m.counterVec("bounces_total", bouncesHelp, "list", "kind")

	reloads := m.counterVec("config_reloads_total", `Configuration reloads (SIGHUP) by result ("ok", "refused").`, "result")
	m.reloads = [2]prometheus.Counter{reloads.WithLabelValues("ok"), reloads.WithLabelValues("refused")}
	m.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
		Name: "config_last_reload_success_timestamp_seconds",
		Help: "When the configuration in force was loaded (start or successful reload), as a Unix time."})
	m.reg.MustRegister(m.lastReload)
	m.lastReload.SetToCurrentTime()
	return m
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	m.reg.MustRegister(v)
	return v
}

func (m *Metrics) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	m.reg.MustRegister(h)
	return h
}

// Handler serves the metrics in Prometheus's text or protobuf formats. A
// failing collector (the store) costs its own metrics, not the scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog{m.log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
	})
}

// errorLog routes promhttp's errors to slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Println(v ...any) {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(toString(x))
	}
	e.l.Warn("metrics", "err", b.String())
}

func toString(x any) string {
	if err, ok := x.(error); ok {
		return err.Error()
	}
	if s, ok := x.(string); ok {
		return s
	}
	return "?"
}

// MilterOrdinary implements milter.Observer; it allocates nothing.
func (m *Metrics) MilterOrdinary() { m.milterOrdinary.Inc() }

// MilterVerdict implements milter.Observer; it allocates nothing.
func (m *Metrics) MilterVerdict(r policy.Reason) {
	if r >= 0 && int(r) < len(m.milterVerdicts) {
		m.milterVerdicts[r].Inc()
		return
	}
	m.milterOther.Inc()
}

// MilterTokenCheck implements milter.Observer.
func (m *Metrics) MilterTokenCheck(d time.Duration) { m.milterCheck.Observe(d.Seconds()) }

// LMTPDelivery implements delivery.Observer.
func (m *Metrics) LMTPDelivery(outcome string, d time.Duration) {
	m.lmtpDeliveries.WithLabelValues(outcome).Inc()
	m.lmtpDuration.Observe(d.Seconds())
}

// LMTPRecipients implements delivery.Observer.
func (m *Metrics) LMTPRecipients(delivered, failed, deferred int) {
	m.recipients[0].Add(float64(delivered))
	m.recipients[1].Add(float64(failed))
	m.recipients[2].Add(float64(deferred))
}

// RelayConnect implements relay.Observer.
func (m *Metrics) RelayConnect(_ time.Duration, err *relay.Error) {
	if err == nil {
		m.relayConnects[0].Inc()
		return
	}
	m.relayConnects[1].Inc()
	m.relayError(err)
}

// RelayTransaction implements relay.Observer.
func (m *Metrics) RelayTransaction(d time.Duration, delivered int, errs []*relay.Error) {
	if delivered > 0 {
		m.relayTxns[0].Inc()
	} else {
		m.relayTxns[1].Inc()
	}
	m.relayTxnLength.Observe(d.Seconds())
	for _, e := range errs {
		m.relayError(e)
	}
}

func (m *Metrics) relayError(e *relay.Error) {
	class := "permanent"
	if e.Temporary {
		class = "temporary"
	}
	m.relayErrors.WithLabelValues(class, e.Stage).Inc()
}

// Reload counts a configuration reload; a successful one also sets the
// time of the configuration in force.
func (m *Metrics) Reload(ok bool) {
	if ok {
		m.reloads[0].Inc()
		m.lastReload.SetToCurrentTime()
		return
	}
	m.reloads[1].Inc()
}
