//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

// Scenario 6: issuing tokens through the HTTP API with 8 concurrent
// clients (keep-alive connections, one per client) against `serve` on
// SQLite: tokens per second and the p99 of one request, against the same
// issuing done in process by tokenops — the path `token issue` runs, on a
// store of its own with the same settings (WAL, synchronous=FULL) — with 8
// goroutines. The ratio says what HTTP, JSON and authentication cost on
// top of the store's commit. Target: p99 under 20 ms.

const (
	apiClients = 8
	apiTarget  = 20 * time.Millisecond
)

func benchAPI(t *testing.T, e *env, rep *report) {
	n, rounds := 2000, 3
	if e.scale.quick {
		n, rounds = 200, 2
	}
	apiAddr := freeAddr(t)
	d := e.startDaemon(t, daemonConf{relay: "127.0.0.1:9", api: apiAddr,
		lists: []list{{addr: "board@example.org", members: generatedMembers(10)}}})
	out, err := exec.Command(e.binary, "apikey", "create", "--config", filepath.Join(d.dir, "restrictedmail.toml"),
		"--name", "bench", "--list", "*", "--scope", "issue").CombinedOutput()
	if err != nil {
		t.Fatalf("apikey create: %v\n%s", err, out)
	}
	key, _, _ := strings.Cut(string(out), "\n")
	base := "http://" + apiAddr + "/api/v1/lists/board@example.org/tokens"

	ops := baselineOps(t, e)
	var apiRates, baseRates, apiLat, baseLat []float64
	for r := range rounds {
		for _, cfg := range rotate([]string{"api", "baseline"}, r) {
			var rate float64
			var lats []float64
			if cfg == "api" {
				rate, lats = issueViaAPI(t, base, key, n, r)
				apiRates, apiLat = append(apiRates, rate), append(apiLat, lats...)
			} else {
				rate, lats = issueInProcess(t, ops, n, r)
				baseRates, baseLat = append(baseRates, rate), append(baseLat, lats...)
			}
			t.Logf("round %d %s: %.0f tokens/s, p99 %s", r, cfg, rate, ms(percentile(lats, 99)))
		}
	}
	p99, baseP99 := percentile(apiLat, 99), percentile(baseLat, 99)
	rep.add(row{
		scenario: fmt.Sprintf("issuing %s tokens through the HTTP API, %d concurrent clients, SQLite: tokens/s", count(n), apiClients),
		rm:       persec(median(apiRates), "tokens"),
		base:     persec(median(baseRates), "tokens") + " in process (tokenops, the path of `token issue`)",
		ratios:   ratios(apiRates, baseRates),
	})
	rep.add(row{
		scenario: "issuing through the HTTP API: latency of one request, p50 · p99",
		rm:       ms(percentile(apiLat, 50)) + " · " + ms(p99),
		base:     ms(percentile(baseLat, 50)) + " · " + ms(baseP99) + " in process",
		ratios:   []float64{p99 / baseP99},
	})
	rep.target(fmt.Sprintf("issuing through the API with %d clients: p99 under %s", apiClients, apiTarget), p99 < apiTarget.Seconds(),
		"p99 %s over %s requests", ms(p99), count(len(apiLat)))
}

func generatedMembers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m%d@example.net", i)
	}
	return out
}

// issueViaAPI issues n tokens with apiClients clients and returns the
// rate and each request's latency in seconds.
func issueViaAPI(t *testing.T, url, key string, n, round int) (float64, []float64) {
	var (
		mu   sync.Mutex
		lats = make([]float64, 0, n)
		wg   sync.WaitGroup
		errs = make(chan error, apiClients)
	)
	begin := time.Now()
	for c := range apiClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			mine := make([]float64, 0, n/apiClients)
			for i := c; i < n; i += apiClients {
				body, _ := json.Marshal(map[string]any{"sender": author, "owner": fmt.Sprintf("bench-%d", round), "external_ref": fmt.Sprint(i),
					"recipients": []string{"a@example.net", "b@example.com"}})
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(start).Seconds())
				if resp.StatusCode != 201 {
					errs <- fmt.Errorf("issue: HTTP %d", resp.StatusCode)
					return
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return rate(n, elapsed), lats
}

// baselineOps is tokenops on a store of its own with the daemon's list.
func baselineOps(t *testing.T, e *env) *tokenops.Ops {
	db, err := store.Open(context.Background(), filepath.Join(e.dir, "baseline-api.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	l := &policy.List{Addr: address.MustParse("board@example.org"), Bounce: address.MustParse(bounceAddr), Name: "Example Board",
		Members: generatedMembers(10)}
	rules := policy.NewRules("+", token.Finder{Prefix: prefix, Header: "X-Restricted-Token"}, []*policy.List{l})
	rules.Issue = policy.IssueDefaults{TTL: 72 * time.Hour, Uses: 1}
	return tokenops.New(db, tokenops.Settings{Rules: rules})
}

func issueInProcess(t *testing.T, ops *tokenops.Ops, n, round int) (float64, []float64) {
	var (
		mu   sync.Mutex
		lats = make([]float64, 0, n)
		wg   sync.WaitGroup
		errs = make(chan error, apiClients)
	)
	begin := time.Now()
	for c := range apiClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]float64, 0, n/apiClients)
			for i := c; i < n; i += apiClients {
				start := time.Now()
				_, err := ops.Issue(context.Background(), tokenops.IssueRequest{List: "board@example.org", Sender: author,
					Owner: fmt.Sprintf("bench-%d", round), ExternalRef: fmt.Sprint(i), Recipients: []string{"a@example.net", "b@example.com"}})
				if err != nil {
					errs <- err
					return
				}
				mine = append(mine, time.Since(start).Seconds())
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return rate(n, elapsed), lats
}
