package corpus

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
)

// Bounds per message and adapter, far above what any message takes (a few
// milliseconds; the 2.3 MB header under the race detector about a second):
// a hang or a blow-up fails the test, a slow machine does not.
const (
	timeBound = 30 * time.Second
	heapBound = 64 << 20
)

// TestCorpus: every message of the corpus gets its expected verdict from
// the milter and from the LMTP endpoint, each within the time and memory
// bound and without a panic; fed as is, without Postfix's rules, each still
// gets an answer in time. Nothing redistributed and nothing logged holds a
// token or the prefix. Not parallel, so that the heap measured is the
// message's.
func TestCorpus(t *testing.T) {
	cases, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 40 {
		t.Fatalf("the corpus has %d messages, want at least 40", len(cases))
	}
	p := newPipeline(t)
	var passed []string
	var lost, duplicated int
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			raw, err := c.Message()
			if err != nil {
				t.Fatal(err)
			}
			fields, body := milterView(raw, c.Rcpt)
			got := bounded(t, "milter", func() (string, error) { return p.milterVerdict(c.Rcpt, fields, body) })
			if got != c.Milter {
				t.Errorf("milter: %s, want %s (%s)", got, c.Milter, c.About)
			}
			got = bounded(t, "LMTP", func() (string, error) { return p.lmtpVerdict(c.Rcpt, lmtpView(raw, c.Rcpt)) })
			if got != c.LMTP {
				t.Errorf("LMTP: %s, want %s (%s)", got, c.LMTP, c.About)
			}
			if c.LMTP == "pass" {
				passed = append(passed, c.Name)
				// The LMTP 250 comes after the relay's: each member has
				// the copy, once (before the as-is pass sends other bytes).
				got := p.copiesOf("corpus-" + c.Name + "@example.net")
				for _, m := range p.members {
					switch n := got[m]; {
					case n == 0:
						t.Errorf("%s never got the copy", m)
						lost++
					case n > 1:
						t.Errorf("%s got %d copies", m, n)
						duplicated += n - 1
					}
				}
			}
			// As is: whatever the verdict, an answer in time and no panic;
			// closing the connection on a 1 MB line is an answer too.
			rawFields, rawBody := rawMilterView(raw)
			asIs := func(run func() (string, error)) func() (string, error) {
				return func() (string, error) {
					v, err := run()
					if err != nil {
						v = "connection closed: " + err.Error()
					}
					return v, nil
				}
			}
			bounded(t, "milter, as is", asIs(func() (string, error) { return p.milterVerdict(c.Rcpt, rawFields, rawBody) }))
			bounded(t, "LMTP, as is", asIs(func() (string, error) { return p.lmtpVerdict(c.Rcpt, raw) }))
		})
	}
	for _, m := range p.relay.Messages()[:min(3, len(p.relay.Messages()))] {
		if got := dkimtest.VerifyGo(t, m.Data, p.key); len(got) != 1 {
			t.Errorf("a copy is not signed: %v", got)
		}
	}
	log := p.log.String()
	for _, l := range leaks(p.copies(), log) {
		t.Errorf("leak: %s", l)
	}
	if strings.Contains(log, "panic") {
		t.Errorf("a panic was logged:\n%s", log)
	}
	t.Logf("RELIABILITY scenario=corpus-milter-and-lmtp-in-process messages=%d accepted=%d refused=%d lost=%d duplicated=%d leaked=%d panics=%d",
		len(cases), len(passed), len(cases)-len(passed), lost, duplicated, len(leaks(p.copies(), log)), strings.Count(log, "panic"))
}

// bounded runs one adapter on one message and fails t when it errs, takes
// longer than timeBound or grows the heap by more than heapBound.
func bounded(t *testing.T, what string, run func() (string, error)) string {
	t.Helper()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sampler := sampleHeap()
	type result struct {
		verdict string
		err     error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		v, err := run()
		done <- result{v, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(timeBound):
		sampler.Stop()
		t.Fatalf("%s: no verdict within %v", what, timeBound)
	}
	elapsed := time.Since(start)
	peak := sampler.Stop()
	if r.err != nil {
		t.Errorf("%s: %v", what, r.err)
	}
	if grown := int64(peak) - int64(before.HeapInuse); grown > heapBound {
		t.Errorf("%s: the heap grew by %d MiB, bound %d MiB", what, grown>>20, heapBound>>20)
	}
	if elapsed > time.Second {
		t.Logf("%s: %v", what, elapsed.Round(time.Millisecond))
	}
	return r.verdict
}

// heapSampler records the largest heap in use while it runs.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	max  uint64
}

func sampleHeap() *heapSampler {
	s := &heapSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			s.max = max(s.max, ms.HeapInuse)
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) Stop() uint64 {
	close(s.stop)
	s.wg.Wait()
	return s.max
}
