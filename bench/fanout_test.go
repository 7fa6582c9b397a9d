//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
	"github.com/restrictedmail/restrictedmail/relay"
)

// fanoutSize is the message of scenario 3.
const fanoutSize = 50_000

func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("member%06d@example.com", i)
	}
	return out
}

// captureSink is the sink of scenarios 3 to 5: internal/testsmtp, which
// discards the data but counts every recipient exactly and wakes a waiter
// on every transaction. That is what "the last copy at the sink" needs
// (smtp-sink counts messages only, and a copy to 50 recipients is one
// message), and it proves exactly-once along the way. It costs CPU on the
// same machine, but every configuration compared sends to this same sink,
// so the cost is charged to all of them alike.
func captureSink(t *testing.T) *testsmtp.Server {
	return testsmtp.Start(t, testsmtp.Options{DiscardData: true, SMTPUTF8: true})
}

// expectRecipients checks that the sink has exactly n recipients: more
// would be a duplicate, and would make the next run's wait end early.
func expectRecipients(t *testing.T, sink *testsmtp.Server, n int) {
	t.Helper()
	if got := len(sink.Recipients()); got != n {
		t.Fatalf("the sink has %d recipients, want exactly %d", got, n)
	}
}

// benchFanout is scenario 3: one 50 KB message to a list of n recipients,
// through the LMTP endpoint, through Postfix, and one copy per recipient.
func benchFanout(t *testing.T, e *env, rep *report) {
	sc := e.scale
	sink := captureSink(t)
	largest := sc.fanouts[len(sc.fanouts)-1]
	pf := postfixtest.Start(t, postfixtest.Options{
		RelayHost: "[127.0.0.1]:" + port(sink.Addr()),
		MainCF: map[string]string{
			// One message must carry every recipient (default 1000).
			"smtpd_recipient_limit": fmt.Sprint(largest + 1000),
			// Postfix's default; the test harness turns it off.
			"smtp_connection_cache_on_demand": "yes",
		},
	})
	rep.note("Scenario 3's Postfix: smtpd_recipient_limit = %d (default 1000) so that one message carries every recipient; "+
		"everything else as shipped (50 recipients per delivery, up to 20 parallel connections, connection cache on). "+
		"restrictedmail: relay.max_recipients = 50 and relay.connections = 4, its defaults.", largest+1000)
	received := 0

	viaLMTP := func(n int, listAddr string, plain bool) (time.Duration, int64) {
		// A fresh daemon, so that its peak RSS is this fan-out's; warmed
		// up with a one-recipient delivery, as a daemon that has been
		// running is (store opened and paged in, DKIM key used once).
		const warm = "warm-up@example.org"
		d := e.startDaemon(t, daemonConf{relay: sink.Addr(), plainSender: plain,
			lists: []list{{addr: listAddr, members: members(n)}, {addr: warm, members: []string{"warm@example.com"}}}})
		defer d.stop()
		toks := d.issue(t, warm, 1)
		if err := lmtpSend(d.lmtpAddr, warm, tokenMessage(fanoutSize, warm, toks[0], fmt.Sprintf("warm-%d", received))); err != nil {
			t.Fatalf("LMTP warm-up delivery: %v", err)
		}
		received++
		expectRecipients(t, sink, received)
		tok := d.issue(t, listAddr, 1)[0]
		msg := tokenMessage(fanoutSize, listAddr, tok, fmt.Sprintf("fanout-%d-%d", n, received))
		target := received + n
		// The configuration compared is the one measured: tagged envelope
		// senders, or the plain bounce address.
		var wrongSender atomic.Pointer[string]
		sink.SetMailHook(func(from string) *smtp.SMTPError {
			if (from == bounceAddr) != plain {
				wrongSender.Store(&from)
			}
			return nil
		})
		defer sink.SetMailHook(nil)
		errc := make(chan error, 1)
		start := time.Now()
		go func() { errc <- lmtpSend(d.lmtpAddr, listAddr, msg) }()
		sink.WaitRecipients(t, target, 10*time.Minute)
		el := time.Since(start)
		if err := <-errc; err != nil {
			t.Fatalf("LMTP fan-out to %d: %v", n, err)
		}
		if from := wrongSender.Load(); from != nil {
			t.Fatalf("fan-out to %d (plain sender %v) was sent from %q", n, plain, *from)
		}
		expectRecipients(t, sink, target)
		received = target
		return el, d.peakRSS(t)
	}
	viaPostfix := func(n int) time.Duration {
		msg := tokenMessage(fanoutSize, "list@example.org", "unused", fmt.Sprintf("postfix-%d-%d", n, received))
		target := received + n
		queued, err := submitPipelined(pf.SMTPAddr(), author, members(n), msg)
		if err != nil {
			t.Fatalf("submitting to Postfix: %v", err)
		}
		sink.WaitRecipients(t, target, 10*time.Minute)
		el := time.Since(queued)
		pf.WaitQueueEmpty(t, time.Minute)
		expectRecipients(t, sink, target)
		received = target
		return el
	}
	oneCopy := func(n int) time.Duration {
		c, err := relay.New(relay.Options{Address: sink.Addr(), TLS: "none", MaxRecipients: 1, Connections: 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		msg := tokenMessage(fanoutSize, "list@example.org", "unused", "one-copy")
		delivered := 0
		start := time.Now()
		c.Send(context.Background(), bounceAddr, members(n), func() io.Reader { return bytes.NewReader(msg) },
			func(rs []relay.Result) {
				for _, r := range rs {
					if r.Err == nil {
						delivered++
					}
				}
			})
		el := time.Since(start)
		if delivered != n {
			t.Fatalf("one copy per recipient: %d of %d delivered", delivered, n)
		}
		expectRecipients(t, sink, received+n)
		received += n
		return el
	}

	type result struct{ rm, postfix, oneCopy, plain []float64 }
	results := map[int]*result{}
	e.fanRSS = map[int][]int64{}
	for r := range sc.fanRounds {
		for _, n := range sc.fanouts {
			res := results[n]
			if res == nil {
				res = &result{}
				results[n] = res
			}
			configs := []string{"restrictedmail", "postfix"}
			if n == sc.oneCopyAt {
				configs = append(configs, "one copy per recipient", "plain envelope sender")
			}
			for _, c := range rotate(configs, r) {
				switch c {
				case "restrictedmail":
					el, rss := viaLMTP(n, fmt.Sprintf("board%d@example.org", n), false)
					res.rm = append(res.rm, rate(n, el))
					e.fanRSS[n] = append(e.fanRSS[n], rss)
					t.Logf("round %d: %s recipients: restrictedmail %s (peak RSS %s)", r+1, count(n), persec(rate(n, el), "rcpt"), mib(rss))
				case "postfix":
					el := viaPostfix(n)
					res.postfix = append(res.postfix, rate(n, el))
					t.Logf("round %d: %s recipients: Postfix %s", r+1, count(n), persec(rate(n, el), "rcpt"))
				case "plain envelope sender":
					el, _ := viaLMTP(n, fmt.Sprintf("board%d@example.org", n), true)
					res.plain = append(res.plain, rate(n, el))
					t.Logf("round %d: %s recipients: restrictedmail with the plain bounce address %s", r+1, count(n), persec(rate(n, el), "rcpt"))
				default:
					el := oneCopy(n)
					res.oneCopy = append(res.oneCopy, rate(n, el))
					t.Logf("round %d: %s recipients: one copy per recipient %s", r+1, count(n), persec(rate(n, el), "rcpt"))
				}
			}
		}
	}
	for _, n := range sc.fanouts {
		res := results[n]
		rss := slicesMax(e.fanRSS[n])
		name := fmt.Sprintf("3. Fan-out, one 50 KB message to %s recipients", count(n))
		rep.add(row{scenario: name + " vs Postfix", rm: persec(median(res.rm), "rcpt"),
			base: persec(median(res.postfix), "rcpt") + " (Postfix)", ratios: ratios(res.rm, res.postfix), rss: rss})
		x := median(ratios(res.rm, res.postfix))
		rep.target(fmt.Sprintf("fan-out to %s recipients at least 2× Postfix's recipients/s", count(n)), x >= 2,
			"%.2f× (%s vs %s)", x, persec(median(res.rm), "rcpt"), persec(median(res.postfix), "rcpt"))
		if len(res.oneCopy) > 0 {
			rep.add(row{scenario: name + " vs one copy per recipient", rm: persec(median(res.rm), "rcpt"),
				base: persec(median(res.oneCopy), "rcpt") + " (one copy per recipient)", ratios: ratios(res.rm, res.oneCopy), rss: rss})
			x := median(ratios(res.rm, res.oneCopy))
			rep.target(fmt.Sprintf("fan-out to %s recipients at least 12× one copy per recipient", count(n)), x >= 12,
				"%.1f× (%s vs %s)", x, persec(median(res.rm), "rcpt"), persec(median(res.oneCopy), "rcpt"))
		}
		if len(res.plain) > 0 {
			// Issue 15: each delivery's copies carry its bounce tag in
			// the envelope sender (VERP); the baseline sends from the
			// plain bounce address.
			rep.add(row{scenario: name + ", tagged envelope sender vs the plain bounce address", rm: persec(median(res.rm), "rcpt"),
				base: persec(median(res.plain), "rcpt") + " (plain sender)", ratios: ratios(res.rm, res.plain), rss: rss})
			x := median(ratios(res.rm, res.plain))
			rep.target(fmt.Sprintf("fan-out to %s recipients with tagged envelope senders not slower than with the plain bounce address (at least 0.95×)", count(n)), x >= 0.95,
				"%.2f× (%s vs %s)", x, persec(median(res.rm), "rcpt"), persec(median(res.plain), "rcpt"))
		}
	}
}

func slicesMax(xs []int64) int64 {
	var m int64
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// submitPipelined submits one message to many recipients with ESMTP
// PIPELINING (RFC 2920) and returns when the server has queued it.
// go-smtp's client waits for each RCPT reply in turn, which for 100,000
// recipients takes longer than the delivery being measured.
func submitPipelined(addr, from string, rcpts []string, msg []byte) (time.Time, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Minute))
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return time.Time{}, fmt.Errorf("greeting: %w", err)
	}
	if err := tp.PrintfLine("EHLO client.bench.test"); err != nil {
		return time.Time{}, err
	}
	_, ext, err := tp.ReadResponse(250)
	if err != nil {
		return time.Time{}, fmt.Errorf("EHLO: %w", err)
	}
	if !strings.Contains(ext, "PIPELINING") {
		return time.Time{}, fmt.Errorf("the server does not offer PIPELINING")
	}
	// Write the commands while reading the replies: neither side may wait
	// for the other with 100,000 replies in flight.
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(conn, 64<<10)
		fmt.Fprintf(w, "MAIL FROM:<%s>\r\n", from)
		for _, r := range rcpts {
			fmt.Fprintf(w, "RCPT TO:<%s>\r\n", r)
		}
		w.WriteString("DATA\r\n")
		werr <- w.Flush()
	}()
	if _, _, err := tp.ReadResponse(250); err != nil {
		return time.Time{}, fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range rcpts {
		if _, _, err := tp.ReadResponse(250); err != nil {
			return time.Time{}, fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	if _, _, err := tp.ReadResponse(354); err != nil {
		return time.Time{}, fmt.Errorf("DATA: %w", err)
	}
	if err := <-werr; err != nil {
		return time.Time{}, err
	}
	dw := tp.DotWriter()
	if _, err := dw.Write(msg); err != nil {
		return time.Time{}, err
	}
	if err := dw.Close(); err != nil {
		return time.Time{}, err
	}
	if _, _, err := tp.ReadResponse(250); err != nil {
		return time.Time{}, fmt.Errorf("end of data: %w", err)
	}
	queued := time.Now()
	tp.PrintfLine("QUIT")
	return queued, nil
}
