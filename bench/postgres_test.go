//go:build bench

package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/pgtest"
	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
)

// benchPostgres is scenario 7: the PostgreSQL store against SQLite in the
// same run — the milter's verdict on a 10 KB tokened message (one token
// lookup on the path Postfix waits on) and tokened messages per second
// end to end through Postfix (lookup, spend and journal in the database).
// PostgreSQL is a private cluster on loopback TCP (internal/pgtest; fsync
// off in both: SQLite's synchronous=FULL still syncs, so the comparison
// favours PostgreSQL on the disk and SQLite on the round trips).
func benchPostgres(t *testing.T, e *env, rep *report) {
	sc := e.scale
	pg := pgtest.New(t)
	type backend struct {
		name string
		url  string // "" for SQLite
	}
	backends := []backend{{"SQLite", ""}, {"PostgreSQL", pg.NewDB(t)}}
	sink := captureSink(t)
	mem := make([]string, sc.mailingMembers)
	for i := range mem {
		mem[i] = fmt.Sprintf("m%02d@example.com", i)
	}
	caching := map[string]string{"smtp_connection_cache_on_demand": "yes", "lmtp_connection_cache_on_demand": "yes"}
	daemons := map[string]*daemonProc{}
	postfixes := map[string]*postfixtest.Instance{}
	conns := map[string]*milterConn{}
	toks := map[string]string{}
	for _, b := range backends {
		d := e.startDaemon(t, daemonConf{relay: sink.Addr(), lists: []list{{addr: board, members: mem}}, storeURL: b.url})
		daemons[b.name] = d
		postfixes[b.name] = postfixtest.Start(t, postfixtest.Options{
			Milter:    "inet:" + d.milterAddr,
			Transport: map[string]string{board: "lmtp:inet:" + d.lmtpAddr},
			RelayHost: "[127.0.0.1]:" + port(sink.Addr()),
			MainCF:    caching,
		})
		c, err := dialMilter(d.milterAddr)
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		defer c.Close()
		conns[b.name] = c
		toks[b.name] = d.issue(t, board, 1)[0] // the milter checks, it never spends
	}

	// The verdict, 10 KB.
	samples := sc.verdicts[0].samples
	pooled := map[string][]float64{}
	p50, p99 := map[string][]float64{}, map[string][]float64{}
	msgs := map[string][]byte{}
	for _, b := range backends {
		msgs[b.name] = tokenMessage(10_000, board, toks[b.name], "pg-verdict-"+b.name)
		for range 50 { // warm-up: connections, caches
			verdict(t, conns[b.name], msgs[b.name])
		}
	}
	for r := range sc.verdictRounds {
		for _, b := range rotate(backends, r) {
			var lat []float64
			for range samples {
				lat = append(lat, verdict(t, conns[b.name], msgs[b.name]).Seconds())
			}
			pooled[b.name] = append(pooled[b.name], lat...)
			p50[b.name] = append(p50[b.name], percentile(lat, 50))
			p99[b.name] = append(p99[b.name], percentile(lat, 99))
		}
		t.Logf("round %d: verdict p99 SQLite %s, PostgreSQL %s", r+1, ms(last(p99["SQLite"])), ms(last(p99["PostgreSQL"])))
	}
	for _, p := range []struct {
		pct   float64
		round map[string][]float64
	}{{50, p50}, {99, p99}} {
		rep.add(row{
			scenario: fmt.Sprintf("7. PostgreSQL store: milter verdict, 10 KB, token part last, p%.0f (%d samples)", p.pct, len(pooled["PostgreSQL"])),
			rm:       ms(percentile(pooled["PostgreSQL"], p.pct)),
			base:     ms(percentile(pooled["SQLite"], p.pct)) + " (SQLite)",
			ratios:   ratios(p.round["PostgreSQL"], p.round["SQLite"]),
			rss:      daemons["PostgreSQL"].peakRSS(t),
		})
	}
	pgP99 := percentile(pooled["PostgreSQL"], 99)
	rep.target("milter verdict on a 10 KB message with the PostgreSQL store (loopback): p99 under 2 ms", pgP99 < 0.002,
		"p99 %s (SQLite %s)", ms(pgP99), ms(percentile(pooled["SQLite"], 99)))

	// End to end: tokened messages through Postfix, the milter and the
	// LMTP endpoint, each backend with its own Postfix.
	n := max(sc.mailings/2, 20)
	received := 0
	run := func(b backend, msgs [][]byte) time.Duration {
		target := received + len(msgs)*sc.mailingMembers
		start := time.Now()
		if err := submitAll(postfixes[b.name].SMTPAddr(), msgs, 10); err != nil {
			t.Fatalf("submitting: %v", err)
		}
		sink.WaitRecipients(t, target, 5*time.Minute)
		el := time.Since(start)
		postfixes[b.name].WaitQueueEmpty(t, time.Minute)
		expectRecipients(t, sink, target)
		received = target
		return el
	}
	messages := func(b backend, round, count int) [][]byte {
		ts := daemons[b.name].issue(t, board, count)
		out := make([][]byte, len(ts))
		for i, tok := range ts {
			out[i] = tokenMessage(mailingSize, board, tok, fmt.Sprintf("pg-%s-%d-%d", b.name, round, i))
		}
		return out
	}
	for _, b := range backends {
		run(b, messages(b, -1, 20))
	}
	rates := map[string][]float64{}
	for r := range sc.mailingRounds {
		for _, b := range rotate(backends, r) {
			m := messages(b, r, n)
			el := run(b, m)
			rates[b.name] = append(rates[b.name], rate(len(m), el))
			t.Logf("round %d: %s %s", r+1, b.name, persec(rate(len(m), el), "msg"))
		}
	}
	ratio := median(ratios(rates["PostgreSQL"], rates["SQLite"]))
	rep.add(row{
		scenario: fmt.Sprintf("7. PostgreSQL store: %s tokened messages to a list of %d, through Postfix", count(n), sc.mailingMembers),
		rm:       persec(median(rates["PostgreSQL"]), "msg"),
		base:     persec(median(rates["SQLite"]), "msg") + " (SQLite)",
		ratios:   ratios(rates["PostgreSQL"], rates["SQLite"]),
		rss:      daemons["PostgreSQL"].peakRSS(t),
	})
	rep.target("tokened messages end to end with the PostgreSQL store at least 0.8× SQLite's", ratio >= 0.8,
		"%.2f× (%s vs %s)", ratio, persec(median(rates["PostgreSQL"]), "msg"), persec(median(rates["SQLite"]), "msg"))
	rep.note("Scenario 7: two daemons, one on SQLite, one on PostgreSQL (a private cluster on loopback TCP, fsync off, "+
		"internal/pgtest), each behind its own Postfix as in scenario 4, measured alternately in the same run; %d tokened messages per round.", n)
}
