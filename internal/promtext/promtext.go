// Package promtext reads Prometheus's text exposition format, so that tests
// can scrape /metrics over HTTP and compare values without importing
// Prometheus's own libraries (which only metrics/ and daemon/ use).
package promtext

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Samples maps each series, written as the exposition writes it —
// `name{label="value",...}` with labels in name order, or `name` — to its
// value.
type Samples map[string]float64

// Fetch scrapes url (an http:// URL of a /metrics endpoint).
func Fetch(url string) (Samples, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return Parse(resp.Body)
}

// Parse reads the text format: comment lines are skipped, every other line
// is a series and its value (timestamps are not used by our exposition).
func Parse(r io.Reader) (Samples, error) {
	s := Samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("bad sample line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad value in %q: %v", line, err)
		}
		s[line[:i]] = v
	}
	return s, sc.Err()
}

// Key writes the series name with labels given as name, value pairs, in
// the exposition's order (by label name).
func Key(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	type pair struct{ k, v string }
	var ps []pair
	for i := 0; i+1 < len(labels); i += 2 {
		ps = append(ps, pair{labels[i], labels[i+1]})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].k < ps[j].k })
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.k + "=" + strconv.Quote(p.v)
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// Get returns the value of a series (0 when absent, as a counter that has
// not been touched).
func (s Samples) Get(name string, labels ...string) float64 { return s[Key(name, labels...)] }

// Has reports whether the series is present.
func (s Samples) Has(name string, labels ...string) bool {
	_, ok := s[Key(name, labels...)]
	return ok
}
