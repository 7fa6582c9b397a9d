//go:build bench

package bench

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
)

// mailingSize is the size of each message of scenario 4: a short
// announcement with its token file attached.
const mailingSize = 3_000

// benchMailings is scenario 4: many small tokened mailings through the whole
// path (Postfix with the milter, the queue, the LMTP endpoint, the fan-out),
// against Postfix expanding the same list by itself.
func benchMailings(t *testing.T, e *env, rep *report) {
	sc := e.scale
	sink := captureSink(t)
	mem := make([]string, sc.mailingMembers)
	for i := range mem {
		mem[i] = fmt.Sprintf("m%02d@example.com", i)
	}
	d := e.startDaemon(t, daemonConf{relay: sink.Addr(), lists: []list{{addr: board, members: mem}}})
	// Postfix's own defaults for connection caching, which the harness
	// turns off; everything else as the harness sets it.
	caching := map[string]string{"smtp_connection_cache_on_demand": "yes", "lmtp_connection_cache_on_demand": "yes"}
	withRM := postfixtest.Start(t, postfixtest.Options{
		Milter:    "inet:" + d.milterAddr,
		Transport: map[string]string{board: "lmtp:inet:" + d.lmtpAddr},
		RelayHost: "[127.0.0.1]:" + port(sink.Addr()),
		MainCF:    caching,
	})
	aliasCF := map[string]string{"virtual_alias_maps": "inline:{ {" + board + "=" + strings.Join(mem, ", ") + "} }"}
	for k, v := range caching {
		aliasCF[k] = v
	}
	alone := postfixtest.Start(t, postfixtest.Options{RelayHost: "[127.0.0.1]:" + port(sink.Addr()), MainCF: aliasCF})
	rep.note("Scenario 4: restrictedmail is Postfix with smtpd_milters and transport_maps pointing at the daemon, which relays "+
		"straight to the sink; the baseline is Postfix alone with virtual_alias_maps expanding %s into the same %d members. "+
		"Both: connection caching on (Postfix's default), 10 submitting connections.", board, sc.mailingMembers)

	received := 0
	run := func(pf *postfixtest.Instance, msgs [][]byte) time.Duration {
		target := received + len(msgs)*sc.mailingMembers
		start := time.Now()
		if err := submitAll(pf.SMTPAddr(), msgs, 10); err != nil {
			t.Fatalf("submitting: %v", err)
		}
		sink.WaitRecipients(t, target, 5*time.Minute)
		el := time.Since(start)
		pf.WaitQueueEmpty(t, time.Minute)
		expectRecipients(t, sink, target)
		received = target
		return el
	}
	messages := func(round int, toks []string) [][]byte {
		out := make([][]byte, len(toks))
		for i, tok := range toks {
			out[i] = tokenMessage(mailingSize, board, tok, fmt.Sprintf("mailing-%d-%d", round, i))
		}
		return out
	}
	warm := messages(-1, d.issue(t, board, 20))
	run(withRM, warm)
	run(alone, warm)

	rates := map[string][]float64{}
	for r := range sc.mailingRounds {
		msgs := messages(r, d.issue(t, board, sc.mailings))
		for _, c := range rotate([]string{"restrictedmail", "postfix"}, r) {
			pf := withRM
			if c == "postfix" {
				pf = alone
			}
			el := run(pf, msgs)
			rates[c] = append(rates[c], rate(len(msgs), el))
			t.Logf("round %d: %s %s", r+1, c, persec(rate(len(msgs), el), "msg"))
		}
	}
	rep.add(row{
		scenario: fmt.Sprintf("4. %s tokened messages to a list of %d, through Postfix (milter, queue, LMTP, fan-out)",
			count(sc.mailings), sc.mailingMembers),
		rm:     persec(median(rates["restrictedmail"]), "msg"),
		base:   persec(median(rates["postfix"]), "msg") + " (Postfix expanding a virtual alias)",
		ratios: ratios(rates["restrictedmail"], rates["postfix"]),
		rss:    d.peakRSS(t),
	})
}

// submitAll sends every message to board over conns parallel SMTP
// connections, each carrying its share one transaction after another.
func submitAll(addr string, msgs [][]byte, conns int) error {
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Go(func() {
			if err := submitSome(addr, msgs, c, conns); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func submitSome(addr string, msgs [][]byte, first, step int) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.bench.test"); err != nil {
		return err
	}
	for i := first; i < len(msgs); i += step {
		if err := c.Mail(author, nil); err != nil {
			return fmt.Errorf("message %d: MAIL: %w", i, err)
		}
		if err := c.Rcpt(board, nil); err != nil {
			return fmt.Errorf("message %d: RCPT: %w", i, err)
		}
		w, err := c.Data()
		if err != nil {
			return fmt.Errorf("message %d: DATA: %w", i, err)
		}
		if _, err := w.Write(msgs[i]); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("message %d: end of data: %w", i, err)
		}
	}
	return c.Quit()
}
