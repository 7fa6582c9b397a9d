//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/daemon"
	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
)

// TestProfileFanout runs scenario 3's fan-out with the daemon in this
// process (daemon.Start, as `serve` runs it), so that go test's profiles
// see the daemon's work:
//
//	BENCH_PROFILE=100000 go test -tags bench -run '^TestProfileFanout$' -count=1 \
//	    -cpuprofile /tmp/cpu.out -memprofile /tmp/mem.out ./bench
//	go tool pprof -top -cum bench.test /tmp/cpu.out
//
// BENCH_PROFILE is the list size; BENCH_PROFILE_REPS (default 3) how many
// fan-outs to run. The capture sink runs in this process too: its share of
// the profile is testsmtp's and go-smtp's server code.
func TestProfileFanout(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BENCH_PROFILE"))
	if n <= 0 {
		t.Skip("set BENCH_PROFILE=N to profile a fan-out to N recipients in this process")
	}
	reps := 3
	if r, err := strconv.Atoi(os.Getenv("BENCH_PROFILE_REPS")); err == nil && r > 0 {
		reps = r
	}
	e := &env{key: newKey(t)}
	sink := captureSink(t)
	listAddr := "board@example.org"
	dir := t.TempDir()
	conf := writeConfig(t, e, dir, daemonConf{relay: sink.Addr(), lists: []list{{addr: listAddr, members: members(n)}}},
		freeAddr(t), freeAddr(t))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cfg, problems := config.Load(conf)
	if problems.HasErrors() {
		t.Fatal(problems.Error())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("configuration with %d members: %s of heap in use", n, mib(int64(after.HeapAlloc)-int64(before.HeapAlloc)))

	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	toks := issueTokens(t, cfg.Store.Path, listAddr, reps)
	if file := os.Getenv("BENCH_PROFILE_HEAP"); file != "" {
		stop := peakHeapProfile(t, file)
		defer stop()
	}
	for i, tok := range toks {
		msg := tokenMessage(fanoutSize, listAddr, tok, fmt.Sprintf("profile-%d", i))
		start := time.Now()
		if err := lmtpSend(d.LMTPAddr().String(), listAddr, msg); err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		expectRecipients(t, sink, (i+1)*n)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("fan-out %d: %s until the LMTP reply; heap in use %s, heap from the OS %s, GC cycles %d",
			i+1, persec(rate(n, el), "rcpt"), mib(int64(ms.HeapAlloc)), mib(int64(ms.HeapSys)), ms.NumGC)
	}
}

// TestProfileVerdict runs scenario 2's milter conversation with the daemon
// in this process, for go test's profiles:
//
//	BENCH_PROFILE_VERDICT=10000 go test -tags bench -run '^TestProfileVerdict$' -count=1 \
//	    -cpuprofile /tmp/cpu.out ./bench
//
// BENCH_PROFILE_VERDICT is the message size; BENCH_PROFILE_REPS (default
// 2000) the number of messages.
func TestProfileVerdict(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BENCH_PROFILE_VERDICT"))
	if n <= 0 {
		t.Skip("set BENCH_PROFILE_VERDICT=SIZE to profile the milter's verdict on SIZE-byte messages in this process")
	}
	reps := 2000
	if r, err := strconv.Atoi(os.Getenv("BENCH_PROFILE_REPS")); err == nil && r > 0 {
		reps = r
	}
	e := &env{key: newKey(t)}
	conf := writeConfig(t, e, t.TempDir(), daemonConf{relay: noRelay, lists: []list{{addr: board, members: []string{"m1@example.com"}}}},
		freeAddr(t), freeAddr(t))
	cfg, problems := config.Load(conf)
	if problems.HasErrors() {
		t.Fatal(problems.Error())
	}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	tok := issueTokens(t, cfg.Store.Path, board, 1)[0]
	c, err := dialMilter(d.MilterAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := tokenMessage(n, board, tok, "profile")
	var lat []float64
	for range reps {
		lat = append(lat, verdict(t, c, msg).Seconds())
	}
	t.Logf("%d messages of %s: verdict p50 %s, p99 %s, max %s", reps, size(n),
		ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)))
}

// TestProfileMailings runs scenario 4 with the daemon in this process (and
// Postfix as usual), for go test's profiles:
//
//	BENCH_PROFILE_MAILINGS=1000 go test -tags bench -run '^TestProfileMailings$' -count=1 \
//	    -cpuprofile /tmp/cpu.out ./bench
func TestProfileMailings(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BENCH_PROFILE_MAILINGS"))
	if n <= 0 {
		t.Skip("set BENCH_PROFILE_MAILINGS=N to profile N small mailings through Postfix and this process")
	}
	e := &env{key: newKey(t)}
	sink := captureSink(t)
	mem := make([]string, 10)
	for i := range mem {
		mem[i] = fmt.Sprintf("m%02d@example.com", i)
	}
	milterAddr, lmtpAddr := freeAddr(t), freeAddr(t)
	conf := writeConfig(t, e, t.TempDir(), daemonConf{relay: sink.Addr(), lists: []list{{addr: board, members: mem}}}, milterAddr, lmtpAddr)
	cfg, problems := config.Load(conf)
	if problems.HasErrors() {
		t.Fatal(problems.Error())
	}
	d, err := daemon.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	pf := postfixtest.Start(t, postfixtest.Options{
		Milter:    "inet:" + milterAddr,
		Transport: map[string]string{board: "lmtp:inet:" + lmtpAddr},
		RelayHost: "[127.0.0.1]:" + port(sink.Addr()),
		MainCF:    map[string]string{"smtp_connection_cache_on_demand": "yes", "lmtp_connection_cache_on_demand": "yes"},
	})
	toks := issueTokens(t, cfg.Store.Path, board, n)
	msgs := make([][]byte, n)
	for i, tok := range toks {
		msgs[i] = tokenMessage(mailingSize, board, tok, fmt.Sprintf("profile-%d", i))
	}
	start := time.Now()
	if err := submitAll(pf.SMTPAddr(), msgs, 10); err != nil {
		t.Fatal(err)
	}
	submitted := time.Since(start)
	sink.WaitRecipients(t, n*len(mem), 5*time.Minute)
	el := time.Since(start)
	t.Logf("%d mailings: submitted in %v, every copy at the sink after %v: %s", n, submitted.Round(time.Millisecond),
		el.Round(time.Millisecond), persec(rate(n, el), "msg"))
}

// peakHeapProfile watches the heap while the test runs and writes a heap
// profile (live objects) to file whenever the heap in use reaches a new
// high, so that the profile shows what was live at the peak. The returned
// function stops it.
func peakHeapProfile(t *testing.T, file string) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var peak uint64
		for {
			select {
			case <-done:
				t.Logf("heap peak %s; profile of the live heap at that moment in %s", mib(int64(peak)), file)
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc < peak+peak/20 {
				continue
			}
			peak = ms.HeapAlloc
			f, err := os.Create(file)
			if err != nil {
				t.Error(err)
				return
			}
			// Without a GC first: the profile's in-use figures are as of
			// the last GC, which is what the peak consists of.
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}()
	return func() { close(done); <-finished }
}
