//go:build bench

package bench

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
)

const (
	board    = "board@example.org"
	noRelay  = "127.0.0.1:9" // a daemon whose relay the scenario never uses
	ordinary = "someone@example.net"
)

// startNoopMilter serves go-milter's NoOpMilter with go-milter's default
// negotiation, in this process: every event, every reply, the protocol's
// floor for a milter that wants to see everything.
func startNoopMilter(t *testing.T) string {
	t.Helper()
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// minimalProtocol asks Postfix for nothing but the DATA command, where the
// minimal milters accept, and for no macros.
const minimalProtocol = gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoMailFrom | gomilter.OptNoRcptTo |
	gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoBody | gomilter.OptNoUnknown

// minimalMilter accepts every message at DATA, the first event after which
// Postfix sends nothing more of the message to it.
type minimalMilter struct{ gomilter.NoOpMilter }

func (minimalMilter) Data(gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespAccept, nil
}

// startMinimalMilter serves a milter that does nothing and asks Postfix for
// as little as a milter can: DATA only (what any milter that sees every
// message costs: a connection and its negotiation per SMTP session and a
// round trip per message), or RCPT and DATA (the least a milter that
// judges recipients at RCPT, as restrictedmail's does with subaddress
// tokens, can ask for: a round trip per recipient more).
func startMinimalMilter(t *testing.T, rcpt bool) string {
	t.Helper()
	protocol := minimalProtocol
	if rcpt {
		protocol &^= gomilter.OptNoRcptTo
	}
	srv := gomilter.NewServer(gomilter.WithProtocols(protocol),
		gomilter.WithMilter(func() gomilter.Milter { return minimalMilter{} }))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// milterMainCF are the main.cf settings of the ordinary-mail instances
// that differ from internal/postfixtest's: Postfix's own defaults for SMTP
// connection caching (the harness turns it off to make test sessions
// predictable).
var milterMainCF = map[string]string{"smtp_connection_cache_on_demand": "yes"}

// benchOrdinary is scenario 1: Postfix's throughput for ordinary mail with
// restrictedmail's milter, with the no-op milter, with the minimal milters,
// and with no milter.
func benchOrdinary(t *testing.T, e *env, rep *report) {
	sc := e.scale
	sink := startPostfixSink(t)
	d := e.startDaemon(t, daemonConf{relay: noRelay, lists: []list{{addr: board, members: []string{"m1@example.com"}}}})
	configs := []struct {
		name, milter string
		pf           *postfixtest.Instance
	}{
		{"restrictedmail", "inet:" + d.milterAddr, nil},
		{"no milter", "", nil},
		{"no-op milter", "inet:" + startNoopMilter(t), nil},
		{"minimal milter (DATA)", "inet:" + startMinimalMilter(t, false), nil},
		{"minimal milter (RCPT and DATA)", "inet:" + startMinimalMilter(t, true), nil},
	}
	for i := range configs {
		configs[i].pf = postfixtest.Start(t, postfixtest.Options{Milter: configs[i].milter,
			RelayHost: "[127.0.0.1]:" + port(sink.addr), MainCF: milterMainCF})
	}
	rep.note("Scenario 1's Postfix instances: internal/postfixtest's main.cf (no DNS, in_flow_delay = 0, milter_default_action = tempfail, " +
		"relayhost = smtp-sink) with smtp_connection_cache_on_demand = yes, Postfix's default. smtp-source opens an SMTP session per message, " +
		"and Postfix a milter connection per SMTP session: each message pays a milter connection and its negotiation.")
	run := func(pf *postfixtest.Instance, n int) time.Duration {
		target := sink.messages() + n
		start := time.Now()
		cmd := exec.Command("smtp-source", "-s", "10", "-m", fmt.Sprint(n), "-f", "sender@example.com",
			"-t", ordinary, "-M", "client.bench.test", pf.SMTPAddr())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("smtp-source: %v\n%s", err, out)
		}
		sink.waitMessages(t, target, 2*time.Minute)
		return time.Since(start)
	}
	for _, c := range configs {
		run(c.pf, sc.ordinaryWarm) // start Postfix's daemons, fill caches
	}
	rates := map[string][]float64{}
	for r := range sc.ordinaryRounds {
		for _, c := range rotate(configs, r) {
			el := run(c.pf, sc.ordinary)
			rates[c.name] = append(rates[c.name], rate(sc.ordinary, el))
			t.Logf("round %d: %-30s %6.1f msg/s", r+1, c.name, rate(sc.ordinary, el))
		}
	}
	for _, c := range configs {
		c.pf.WaitQueueEmpty(t, time.Minute)
	}
	rss := d.peakRSS(t)
	rm := rates["restrictedmail"]
	name := fmt.Sprintf("1. Milter, ordinary mail (%s messages, 10 connections)", count(sc.ordinary))
	for _, c := range configs[1:] {
		base := c.name
		rep.add(row{
			scenario: name + " vs " + base,
			rm:       persec(median(rm), "msg"),
			base:     persec(median(rates[base]), "msg") + " (" + base + ")",
			ratios:   ratios(rm, rates[base]),
			rss:      rss,
		})
	}
	r := median(ratios(rm, rates["no milter"]))
	rep.target("milter on ordinary mail at least 0.90 of Postfix without a milter", r >= 0.90,
		"%.2f (%s vs %s); %.2f of the no-op milter's. Minimal milters reach %.2f (DATA only) and %.2f (RCPT and DATA) of no milter",
		r, persec(median(rm), "msg"), persec(median(rates["no milter"]), "msg"),
		median(ratios(rm, rates["no-op milter"])), median(ratios(rates["minimal milter (DATA)"], rates["no milter"])),
		median(ratios(rates["minimal milter (RCPT and DATA)"], rates["no milter"])))
	// What the milter itself can be held to: the minimal milters show
	// what Postfix's milter protocol costs whatever the milter does.
	floor := median(ratios(rm, rates["minimal milter (RCPT and DATA)"]))
	rep.target("(proposed) milter on ordinary mail at least 0.95 of a milter that does nothing but answer RCPT and DATA", floor >= 0.95,
		"%.2f (%s vs %s)", floor, persec(median(rm), "msg"), persec(median(rates["minimal milter (RCPT and DATA)"]), "msg"))
}

// benchVerdict is scenario 2: the milter's latency from end of message to
// verdict on restricted mail whose token part comes last.
func benchVerdict(t *testing.T, e *env, rep *report) {
	sc := e.scale
	d := e.startDaemon(t, daemonConf{relay: noRelay, lists: []list{{addr: board, members: []string{"m1@example.com"}}}})
	tok := d.issue(t, board, 1)[0] // the milter checks, it never spends
	noop := startNoopMilter(t)
	type config struct {
		name string
		conn *milterConn
	}
	var configs []config
	for _, c := range []struct{ name, addr string }{{"restrictedmail", d.milterAddr}, {"no-op milter", noop}} {
		conn, err := dialMilter(c.addr)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		defer conn.Close()
		configs = append(configs, config{c.name, conn})
	}
	type stats struct {
		pooled         map[string][]float64 // seconds, every sample
		p50, p99       map[string][]float64 // per round
		p50r, p99r     []float64            // per-round ratios
		msg            []byte
		samples, bytes int
	}
	cases := make([]*stats, len(sc.verdicts))
	for i, vc := range sc.verdicts {
		cases[i] = &stats{pooled: map[string][]float64{}, p50: map[string][]float64{}, p99: map[string][]float64{},
			msg: tokenMessage(vc.size, board, tok, fmt.Sprintf("verdict-%d", vc.size)), samples: vc.samples, bytes: vc.size}
	}
	for _, c := range configs { // warm-up: connections, the store's page cache
		for range 20 {
			verdict(t, c.conn, cases[0].msg)
		}
	}
	for r := range sc.verdictRounds {
		for _, cs := range cases {
			for _, c := range rotate(configs, r) {
				var lat []float64
				for range cs.samples {
					lat = append(lat, verdict(t, c.conn, cs.msg).Seconds())
				}
				cs.pooled[c.name] = append(cs.pooled[c.name], lat...)
				cs.p50[c.name] = append(cs.p50[c.name], percentile(lat, 50))
				cs.p99[c.name] = append(cs.p99[c.name], percentile(lat, 99))
			}
			t.Logf("round %d: %s: restrictedmail p50 %s p99 %s; no-op p50 %s p99 %s", r+1, size(cs.bytes),
				ms(last(cs.p50["restrictedmail"])), ms(last(cs.p99["restrictedmail"])),
				ms(last(cs.p50["no-op milter"])), ms(last(cs.p99["no-op milter"])))
		}
	}
	rep.note("Scenario 2's baseline, go-milter's no-op milter, has read every body chunk (it answers each) and answers end of message at once; " +
		"restrictedmail's milter does not answer body chunks, so at end of message it may still have to read what the socket buffers hold, " +
		"then checks the token in the store.")
	rss := d.peakRSS(t)
	for _, cs := range cases {
		for _, p := range []struct {
			name  string
			pct   float64
			round map[string][]float64
		}{{"p50", 50, cs.p50}, {"p99", 99, cs.p99}} {
			rep.add(row{
				scenario: fmt.Sprintf("2. Milter verdict after end of message, %s, token part last, %s (%d samples)",
					size(cs.bytes), p.name, len(cs.pooled["restrictedmail"])),
				rm:     ms(percentile(cs.pooled["restrictedmail"], p.pct)),
				base:   ms(percentile(cs.pooled["no-op milter"], p.pct)) + " (no-op milter)",
				ratios: ratios(p.round["restrictedmail"], p.round["no-op milter"]),
				rss:    rss,
			})
		}
	}
	for _, cs := range cases {
		limit, ok := map[int]float64{10_000: 0.001, 25_000_000: 0.150}[cs.bytes]
		if !ok {
			continue
		}
		p99 := percentile(cs.pooled["restrictedmail"], 99)
		rep.target(fmt.Sprintf("milter verdict on a %s message: p99 under %s", size(cs.bytes), ms(limit)), p99 < limit,
			"p99 %s, p50 %s (%d samples)", ms(p99), ms(percentile(cs.pooled["restrictedmail"], 50)), len(cs.pooled["restrictedmail"]))
	}
}

// verdict sends msg through the milter, which must accept it, and returns
// the time from end of message to the verdict.
func verdict(t *testing.T, c *milterConn, msg []byte) time.Duration {
	t.Helper()
	act, dt, err := c.send(board, msg)
	if err != nil {
		t.Fatal(err)
	}
	if act.Type != gomilter.ActionAccept && act.Type != gomilter.ActionContinue {
		t.Fatalf("%v: %v %s", errNotAccepted, act.Type, act.SMTPReply)
	}
	if dt == 0 {
		t.Fatalf("the milter decided before the end of the message (%v): the token part was not what it judged", act.Type)
	}
	return dt
}

func last(xs []float64) float64 { return xs[len(xs)-1] }

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
