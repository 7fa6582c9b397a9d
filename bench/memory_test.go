//go:build bench

package bench

import (
	"fmt"
	"testing"
)

// memLimit is issue 6's bound on the daemon's peak RSS for a 50 MB message.
const memLimit = 64 << 20

// benchMemory is scenario 5: the daemon's peak RSS (VmHWM), each figure
// from a fresh daemon process, for a large message through the milter,
// through the LMTP endpoint, and through both (as a real message goes),
// against an idle daemon; and for the large fan-out against the small one
// (measured in scenario 3).
func benchMemory(t *testing.T, e *env, rep *report) {
	sc := e.scale
	sink := captureSink(t)
	mem := []string{"m1@example.com", "m2@example.com", "m3@example.com"}
	conf := daemonConf{relay: sink.Addr(), lists: []list{{addr: board, members: mem}}}
	received := 0

	viaMilter := func(d *daemonProc, msg []byte) {
		c, err := dialMilter(d.milterAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		verdict(t, c, msg)
	}
	viaLMTP := func(d *daemonProc, msg []byte) {
		if err := lmtpSend(d.lmtpAddr, board, msg); err != nil {
			t.Fatalf("LMTP, %s message: %v", size(len(msg)), err)
		}
		received += len(mem)
		expectRecipients(t, sink, received)
	}
	kinds := []struct {
		name string
		run  func(*daemonProc, []byte)
	}{
		{"idle", nil},
		{"through the milter", viaMilter},
		{"through the LMTP endpoint (3 recipients)", viaLMTP},
		{"through the milter, then the LMTP endpoint", func(d *daemonProc, msg []byte) { viaMilter(d, msg); viaLMTP(d, msg) }},
	}
	rss := map[string][]float64{}
	for r := range sc.memRounds {
		for _, k := range rotate(kinds, r) {
			d := e.startDaemon(t, conf)
			if k.run != nil {
				tok := d.issue(t, board, 1)[0]
				k.run(d, tokenMessage(sc.bigMessage, board, tok, fmt.Sprintf("big-%d", r)))
			}
			peak := d.peakRSS(t)
			d.stop()
			rss[k.name] = append(rss[k.name], float64(peak))
			t.Logf("round %d: %s message %s: peak RSS %s", r+1, size(sc.bigMessage), k.name, mib(peak))
		}
	}
	worst := 0.0
	for _, k := range kinds[1:] {
		peak := slicesMaxF(rss[k.name])
		worst = max(worst, peak)
		rep.add(row{
			scenario: fmt.Sprintf("5. Peak RSS, one %s message %s", size(sc.bigMessage), k.name),
			rm:       mib(int64(peak)),
			base:     mib(int64(slicesMaxF(rss["idle"]))) + " (idle daemon)",
			ratios:   ratios(rss[k.name], rss["idle"]),
		})
	}
	rep.target(fmt.Sprintf("peak RSS under 64 MiB for a %s message", size(sc.bigMessage)), worst < memLimit,
		"%s at most (milter %s, LMTP %s, both %s)", mib(int64(worst)),
		mib(int64(slicesMaxF(rss[kinds[1].name]))), mib(int64(slicesMaxF(rss[kinds[2].name]))), mib(int64(slicesMaxF(rss[kinds[3].name]))))

	small, large := e.scale.fanouts[0], e.scale.fanouts[len(e.scale.fanouts)-1]
	if len(e.fanRSS[small]) == 0 || len(e.fanRSS[small]) != len(e.fanRSS[large]) {
		t.Fatal("scenario 3 did not record the fan-outs' peak RSS")
	}
	a, b := toFloat(e.fanRSS[large]), toFloat(e.fanRSS[small])
	x := median(ratios(a, b))
	rep.add(row{
		scenario: fmt.Sprintf("5. Peak RSS, fan-out to %s vs %s recipients (scenario 3)", count(large), count(small)),
		rm:       mib(int64(slicesMaxF(a))) + fmt.Sprintf(" (%s)", count(large)),
		base:     mib(int64(slicesMaxF(b))) + fmt.Sprintf(" (%s)", count(small)),
		ratios:   ratios(a, b),
	})
	rep.target(fmt.Sprintf("peak RSS of the %s-recipient fan-out within 1.5× of the %s-recipient one", count(large), count(small)),
		x <= 1.5, "%.2f× (%s vs %s)", x, mib(int64(slicesMaxF(a))), mib(int64(slicesMaxF(b))))
}

func slicesMaxF(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func toFloat(xs []int64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}
