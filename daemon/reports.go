package daemon

import (
	"context"

	"github.com/restrictedmail/restrictedmail/bounce"
	"github.com/restrictedmail/restrictedmail/config"
)

// reportSide is the worker that sends the reports to senders from the
// store's durable queue (package bounce): what was due when the daemon
// stopped, or was killed, is sent after it starts again.
type reportSide struct {
	stopReporter context.CancelFunc
	reporterDone chan struct{}
}

func (d *Daemon) startReports(cfg *config.Config) {
	r := bounce.NewReporter(bounce.ReportOptions{
		Store: d.db, Settings: d.settings, Logger: d.log, Poll: cfg.Reports.PollInterval.D(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	d.stopReporter, d.reporterDone = cancel, make(chan struct{})
	go func() {
		defer close(d.reporterDone)
		r.Run(ctx)
	}()
}

// stopReports stops the worker; a report it was sending is sent again
// after the claim's lease if it was not recorded as sent.
func (d *Daemon) stopReports() {
	if d.stopReporter != nil {
		d.stopReporter()
		<-d.reporterDone
		d.stopReporter = nil
	}
}
