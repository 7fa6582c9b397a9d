package bounce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/notice"
	"github.com/restrictedmail/restrictedmail/store"
)

// ReportStore is what the report worker needs; *store.DB satisfies it.
type ReportStore interface {
	DueReports(ctx context.Context, now time.Time, limit int) ([]store.Report, error)
	ClaimReport(ctx context.Context, r store.Report, now, lease time.Time) (bool, error)
	FinishReport(ctx context.Context, r store.Report, sent bool, detail string, now time.Time) error
	RetryReport(ctx context.Context, r store.Report, detail string, now, next time.Time) error
	DeliveryDetailOf(ctx context.Context, id string, maxRecipients int) (store.DeliveryDetail, error)
}

// ReportOptions configure a Reporter.
type ReportOptions struct {
	Store    ReportStore
	Settings func() *delivery.Settings // the generation in force: relay, lists, keys
	Logger   *slog.Logger
	Now      func() time.Time
	// Poll is how often due reports are looked for; zero: 5s.
	Poll time.Duration
}

// reportLease is how long a claimed report is someone's: a worker that
// dies while sending leaves it due again after this.
const reportLease = 5 * time.Minute

// maxAttempts: a report that fails temporarily this often is given up.
const maxAttempts = 10

// maxListed bounds the recipients a report names.
const maxListed = 200

// Reporter sends the due reports from the store's durable queue: a report
// that was due when the daemon was killed is sent after it restarts.
type Reporter struct {
	opts ReportOptions
	log  *slog.Logger
}

// NewReporter returns a reporter.
func NewReporter(opts ReportOptions) *Reporter {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Poll <= 0 {
		opts.Poll = 5 * time.Second
	}
	return &Reporter{opts: opts, log: opts.Logger.With("component", "reports")}
}

// Run sends due reports until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Poll)
	defer t.Stop()
	for {
		r.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce sends the reports due now.
func (r *Reporter) RunOnce(ctx context.Context) {
	due, err := r.opts.Store.DueReports(ctx, r.opts.Now(), 50)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reading due reports", "err", err)
		}
		return
	}
	for _, rep := range due {
		if ctx.Err() != nil {
			return
		}
		now := r.opts.Now()
		ok, err := r.opts.Store.ClaimReport(ctx, rep, now, now.Add(reportLease))
		if err != nil || !ok {
			continue // another worker has it, or the store is busy: next round
		}
		r.send(ctx, rep)
	}
}

func (r *Reporter) send(ctx context.Context, rep store.Report) {
	now := r.opts.Now()
	finish := func(sent bool, detail string) {
		if err := r.opts.Store.FinishReport(ctx, rep, sent, detail, r.opts.Now()); err != nil {
			r.log.Warn("recording a report", "delivery", rep.DeliveryID, "err", err)
		}
	}
	dd, err := r.opts.Store.DeliveryDetailOf(ctx, rep.DeliveryID, maxListed)
	if errors.Is(err, store.ErrNoDelivery) {
		finish(false, "delivery no longer in the journal")
		return
	}
	if err != nil {
		r.retry(ctx, rep, err)
		return
	}
	set := r.opts.Settings()
	la, err := address.Parse(dd.List)
	l := set.Rules.List(la)
	if err != nil || l == nil {
		finish(false, "list no longer configured")
		return
	}
	text, send := Text(dd, rep.Seq)
	if !send {
		finish(false, "nothing to report")
		return
	}
	subject := "Delivery report: your message to " + l.Addr.String()
	if rep.Seq > 0 {
		subject = "Delivery report (update): your message to " + l.Addr.String()
	}
	m := notice.Mail{
		FromName: l.Name, From: l.Bounce.String(), To: dd.Sender, Subject: subject, Text: text,
		Hostname: set.Hostname, Date: now, Kind: "report",
		Headers: [][2]string{{"X-Restricted-Delivery", dd.ID}},
	}
	err = notice.Send(ctx, set.Relay, set.KeyFor(l.Bounce.Domain), m)
	switch {
	case errors.Is(err, notice.ErrRefused):
		r.log.Warn("report refused by the relay", "delivery", dd.ID, "list", l.Addr.String(), "err", err)
		finish(false, err.Error())
	case err != nil:
		r.retry(ctx, rep, err)
	default:
		r.log.Info("report sent", "delivery", dd.ID, "list", l.Addr.String(), "follow_up", rep.Seq > 0,
			"delivered", dd.Counts.Delivered, "failed", dd.Counts.Failed)
		finish(true, "")
	}
}

func (r *Reporter) retry(ctx context.Context, rep store.Report, cause error) {
	now := r.opts.Now()
	if rep.Attempts+1 >= maxAttempts {
		r.log.Warn("report given up", "delivery", rep.DeliveryID, "attempts", rep.Attempts+1, "err", cause)
		if err := r.opts.Store.FinishReport(ctx, rep, false, cause.Error(), now); err != nil {
			r.log.Warn("recording a report", "delivery", rep.DeliveryID, "err", err)
		}
		return
	}
	next := now.Add(time.Duration(1<<min(rep.Attempts, 6)) * 30 * time.Second)
	r.log.Warn("report failed; will retry", "delivery", rep.DeliveryID, "next", next, "err", cause)
	if err := r.opts.Store.RetryReport(ctx, rep, cause.Error(), now, next); err != nil {
		r.log.Warn("recording a report", "delivery", rep.DeliveryID, "err", err)
	}
}

// Text is the report on dd (seq 0: after the fan-out; 1: the follow-up),
// and whether there is anything to send: a "failures" report with no
// failure and no delay is not sent.
func Text(dd store.DeliveryDetail, seq int) (string, bool) {
	c := dd.Counts
	total := c.Pending + c.Delivered + c.Failed
	var failed, delayed []string
	for _, r := range dd.Recipients {
		switch r.State {
		case store.Failed:
			failed = append(failed, fmt.Sprintf("  %s (%s)", r.Rcpt, oneLine(r.Detail)))
		case store.Bounced:
			failed = append(failed, fmt.Sprintf("  %s (%s)", r.Rcpt, oneLine(r.BounceDetail, r.BounceStatus)))
		case store.Delayed:
			delayed = append(delayed, fmt.Sprintf("  %s (%s)", r.Rcpt, oneLine(r.BounceDetail, r.BounceStatus)))
		}
	}
	if dd.Report == store.ReportFailures && len(failed) == 0 && len(delayed) == 0 {
		return "", false
	}
	var b strings.Builder
	if seq > 0 {
		b.WriteString("Bounces arrived after your message went out; this is where it stands now.\n\n")
	}
	fmt.Fprintf(&b, "Your message to %s of %s reached %d of %d recipients.\n",
		displayList(dd.List), dd.Created.UTC().Format("2 Jan 2006 15:04 MST"), c.Delivered, total)
	if len(failed) > 0 {
		fmt.Fprintf(&b, "\nFailed (%d):\n%s\n", c.Failed, strings.Join(failed, "\n"))
	}
	if len(delayed) > 0 {
		fmt.Fprintf(&b, "\nDelayed, still being tried by the receiving systems (%d):\n%s\n", c.Delayed, strings.Join(delayed, "\n"))
	}
	if dd.Truncated {
		b.WriteString("\n(More recipients than this report lists; the list's owner can see all of them.)\n")
	}
	b.WriteString("\nThis report was generated automatically; replies to it are not read.\n")
	return b.String(), true
}

// oneLine is the first non-empty of vs on one line, shortened.
func oneLine(vs ...string) string {
	for _, v := range vs {
		v = strings.Join(strings.Fields(v), " ")
		if v == "" {
			continue
		}
		if len(v) > 200 {
			v = v[:200] + "…"
		}
		return v
	}
	return "no reason given"
}

func displayList(key string) string {
	if a, err := address.Parse(key); err == nil {
		return a.String()
	}
	return key
}
