package config

import (
	"strings"
	"testing"
	"time"
)

// TestReportsAndBounceForward: the report keys' defaults, their checks,
// and a bounce_forward that would lead back to a list or a bounce address.
func TestReportsAndBounceForward(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, minimal)
	if l := cfg.Lists[0]; l.Report != "none" || !l.BounceFwd.IsZero() || cfg.Reports.Window.D() != time.Hour || cfg.Reports.PollInterval.D() != 5*time.Second {
		t.Errorf("defaults: report %q, forward %v, reports %+v", l.Report, l.BounceFwd, cfg.Reports)
	}
	cfg = mustLoad(t, minimal+"report = \"failures\"\nbounce_forward = \"owner@example.org\"\n")
	if l := cfg.Lists[0]; l.Report != "failures" || l.BounceFwd.String() != "owner@example.org" {
		t.Errorf("report %q, forward %v", l.Report, l.BounceFwd)
	}
	for _, tt := range []struct{ doc, key, text string }{
		{minimal + "report = \"always\"\n", "lists[0].report", "not one of none, summary, failures"},
		{minimal + "bounce_forward = \"board@example.org\"\n", "lists[0].bounce_forward", "is a list address"},
		{minimal + "bounce_forward = \"Board-Bounces@example.org\"\n", "lists[0].bounce_forward", "is a bounce address"},
		{minimal + "bounce_forward = \"not an address\"\n", "lists[0].bounce_forward", "not an address"},
		{minimal + "[reports]\npoll_interval = \"0s\"\n", "reports.poll_interval", "longer than 0"},
		{minimal + "[reports]\nwindow = \"-1s\"\n", "reports.window", "negative"},
	} {
		_, ps, _ := load(t, tt.doc)
		wantError(t, ps, tt.key, tt.text)
	}
	_, ps, _ := load(t, strings.Replace(minimal, `hostname = "mx.example.org"`, "hostname = \"mx.example.org\"\nrecipient_delimiter = \"+-\"", 1))
	wantWarning(t, ps, "lists[0].bounce_address", "contains the recipient delimiter")
}
