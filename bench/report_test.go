//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// row is one line of the table: restrictedmail against one baseline.
type row struct {
	scenario string
	rm, base string    // formatted figures (medians over rounds, or pooled percentiles)
	ratios   []float64 // restrictedmail / baseline, per round
	rss      int64     // the daemon's peak RSS in bytes; 0: not applicable
}

// target is one of issue 6's targets, met or missed, with the figure.
type target struct {
	text   string
	met    bool
	figure string
}

type report struct {
	mu      sync.Mutex
	rows    []row
	targets []target
	notes   []string
	elapsed time.Duration
	// load is the 1-minute load average at the start and at the end: on a
	// shared machine it says whether others were busy meanwhile.
	load [2]string
}

// loadAverage is the 1-minute load average.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

func (r *report) add(rw row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, rw)
}

func (r *report) target(text string, met bool, figure string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.targets = append(r.targets, target{text, met, fmt.Sprintf(figure, args...)})
}

// note records a fact about the run that a reader of the table needs.
func (r *report) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// markdown is the table and the targets.
func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString("| Scenario | restrictedmail | baseline | ratio: median (per round) | peak RSS |\n")
	b.WriteString("|---|---:|---:|---|---:|\n")
	for _, rw := range r.rows {
		ratio := "—"
		if len(rw.ratios) > 0 {
			per := make([]string, len(rw.ratios))
			for i, x := range rw.ratios {
				per[i] = fmt.Sprintf("%.2f", x)
			}
			ratio = fmt.Sprintf("**%.2f** (%s)", median(rw.ratios), strings.Join(per, ", "))
		}
		rss := "—"
		if rw.rss > 0 {
			rss = mib(rw.rss)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", rw.scenario, rw.rm, rw.base, ratio, rss)
	}
	b.WriteString("\nTargets:\n\n")
	for _, tg := range r.targets {
		state := "missed"
		if tg.met {
			state = "met"
		}
		fmt.Fprintf(&b, "- **%s**: %s — %s\n", state, tg.text, tg.figure)
	}
	return b.String()
}

// document is BENCHMARKS.md.
func (r *report) document(sc scale) string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Written by `make bench` (package `bench`, which says what each scenario measures); rerun it rather than editing this file.\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n", machine())
	fmt.Fprintf(&b, "- Duration of TestBenchmarks (building the daemon included, compiling the benchmark not): %s\n", r.elapsed.Round(time.Second))
	fmt.Fprintf(&b, "- Load average (1 min) at the start: %s, at the end: %s (the machine is shared; above 2, something else was running)\n", r.load[0], r.load[1])
	fmt.Fprintf(&b, "- Rounds, each running every configuration once, in rotating order: %d, %d, %d, %d and %d for scenarios 1 to 5. "+
		"The absolute columns are medians over the rounds (latencies: percentiles over all samples, peak RSS: the highest); "+
		"the ratio is the median of the per-round ratios.\n\n",
		sc.ordinaryRounds, sc.verdictRounds, sc.fanRounds, sc.mailingRounds, sc.memRounds)
	b.WriteString(r.markdown())
	if len(r.notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// machine describes the host: cores, memory, CPU model, Go, Postfix, kernel.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown memory"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
		}
	}
	postfix := "unknown"
	if out, err := exec.Command("postconf", "-d", "-h", "mail_version").Output(); err == nil {
		postfix = strings.TrimSpace(string(out))
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d cores (%s), %s, Linux %s, %s, Postfix %s",
		runtime.NumCPU(), model, mem, kernel, runtime.Version(), postfix)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// persec formats a rate.
func persec(x float64, unit string) string {
	if x >= 100 {
		return fmt.Sprintf("%.0f %s/s", x, unit)
	}
	return fmt.Sprintf("%.1f %s/s", x, unit)
}

// ms formats a duration given in seconds as milliseconds.
func ms(sec float64) string {
	switch {
	case sec < 0.001:
		return fmt.Sprintf("%.3f ms", sec*1000)
	case sec < 0.1:
		return fmt.Sprintf("%.2f ms", sec*1000)
	}
	return fmt.Sprintf("%.0f ms", sec*1000)
}

// count formats a number with thousands separators.
func count(n int) string {
	s := fmt.Sprint(n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// size formats a message size in decimal units, as the issue names them.
func size(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%d MB", n/1_000_000)
	case n >= 1_000:
		return fmt.Sprintf("%d KB", n/1_000)
	}
	return fmt.Sprintf("%d B", n)
}
