package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/store"
)

func runDelivery(ctx context.Context, args []string, out, errOut io.Writer) int {
	return subcommand("delivery", args, out, errOut, deliveryUsage, map[string]func([]string) int{
		"list": func(a []string) int { return runDeliveryList(ctx, a, out, errOut) },
		"show": func(a []string) int { return runDeliveryShow(ctx, a, out, errOut) },
	})
}

func deliveryUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  restrictedmail delivery list --config FILE [--list ADDRESS] [--since 7d] [--limit 100]
  restrictedmail delivery show --config FILE ID

list shows the deliveries (one received message for one restricted address),
newest first, with how many recipients were delivered, failed (refused by the
relay, or bounced later), delayed and pending. show prints one delivery's
recipients: their state, the relay's reply to a refusal, and the status and
diagnostic of the delivery report (bounce) that came back for them.
`)
}

func runRecipients(ctx context.Context, args []string, out, errOut io.Writer) int {
	return subcommand("recipients", args, out, errOut, recipientsUsage, map[string]func([]string) int{
		"bouncing": func(a []string) int { return runRecipientsBouncing(ctx, a, out, errOut) },
	})
}

func recipientsUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  restrictedmail recipients bouncing --config FILE --list ADDRESS [--min 3] [--last 20]

bouncing lists the recipients of a list that bounced permanently (a delivery
report said failed) in at least --min of its last --last deliveries: the
addresses to remove from its recipients file.
`)
}

func runDeliveryList(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("delivery list", "delivery list --config FILE [--list ADDRESS] [--since 7d]", errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	list := fs.String("list", "", "only the deliveries of this restricted `address`")
	since := fs.String("since", "7d", "only deliveries younger than this `duration` (0: all)")
	limit := fs.Int("limit", 100, "show at most this many deliveries (`n`)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	var d config.Duration
	if err := d.UnmarshalText([]byte(*since)); err != nil {
		return usageErr(fs, "--since: %v", err)
	}
	q := store.DeliveryQuery{Limit: *limit}
	if d.D() > 0 {
		q.Since = time.Now().Add(-d.D())
	}
	return withStore(ctx, *path, errOut, func(cfg *config.Config, db *store.DB) int {
		if *list != "" {
			a, err := address.Parse(*list)
			if err != nil || cfg.List(a) == nil {
				fmt.Fprintf(errOut, "restrictedmail delivery list: --list %s is not a restricted address in %s\n", *list, cfg.File)
				return exitFailure
			}
			q.List = a.Key()
		}
		ds, err := db.ListDeliveries(ctx, q)
		if err != nil {
			fmt.Fprintf(errOut, "restrictedmail delivery list: %v\n", err)
			return exitFailure
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCREATED\tLIST\tSENDER\tTOKEN\tRECIPIENTS\tDELIVERED\tFAILED\tDELAYED\tPENDING\tSTATE")
		for _, s := range ds {
			c := s.Counts
			st := "complete"
			if s.Completed.IsZero() {
				st = "pending"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", s.ID, s.Created.UTC().Format(time.RFC3339), s.List,
				orNull(s.Sender), s.TokenID, c.Pending+c.Delivered+c.Failed, c.Delivered, c.Failed, c.Delayed, c.Pending, st)
		}
		tw.Flush()
		return exitOK
	})
}

func orNull(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

// showMax bounds the recipients `delivery show` prints.
const showMax = 100000

func runDeliveryShow(ctx context.Context, args []string, out, errOut io.Writer) int {
	path, id, exit, ok := oneID("delivery show", "delivery show --config FILE ID", "delivery ID (see delivery list)", args, errOut)
	if !ok {
		return exit
	}
	return withStore(ctx, path, errOut, func(cfg *config.Config, db *store.DB) int {
		dd, err := db.DeliveryDetailOf(ctx, id, showMax)
		if errors.Is(err, store.ErrNoDelivery) {
			fmt.Fprintf(errOut, "restrictedmail delivery show: no delivery with id %q (see delivery list)\n", id)
			return exitFailure
		}
		if err != nil {
			fmt.Fprintf(errOut, "restrictedmail delivery show: %v\n", err)
			return exitFailure
		}
		c := dd.Counts
		fmt.Fprintf(out, "delivery %s\nlist      %s\nsender    %s\ntoken     %s\ncreated   %s\n", dd.ID, dd.List, orNull(dd.Sender), dd.TokenID,
			dd.Created.UTC().Format(time.RFC3339))
		if dd.Completed.IsZero() {
			fmt.Fprintln(out, "completed no (recipients pending)")
		} else {
			fmt.Fprintf(out, "completed %s\n", dd.Completed.UTC().Format(time.RFC3339))
		}
		report := dd.Report
		if report == "" {
			report = store.ReportNone
		}
		fmt.Fprintf(out, "report    %s\n", report)
		fmt.Fprintf(out, "reached %d of %d recipients: %d delivered (%d delayed), %d failed (%d bounced), %d pending\n\n",
			c.Delivered, c.Pending+c.Delivered+c.Failed, c.Delivered, c.Delayed, c.Failed, c.Bounced, c.Pending)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RECIPIENT\tSTATE\tUPDATED\tSTATUS\tDETAIL")
		for _, r := range dd.Recipients {
			updated := "-"
			if !r.Updated.IsZero() {
				updated = r.Updated.UTC().Format(time.RFC3339)
			}
			status, detail := r.BounceStatus, r.BounceDetail
			if r.State == store.Failed {
				status, detail = "", r.Detail // the relay's refusal
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Rcpt, r.State, updated, dash(status), dash(strings.Join(strings.Fields(detail), " ")))
		}
		tw.Flush()
		return exitOK
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runRecipientsBouncing(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("recipients bouncing", "recipients bouncing --config FILE --list ADDRESS [--min 3]", errOut)
	path := fs.String("config", defaultConfig, "configuration `file`")
	list := fs.String("list", "", "restricted `address` whose recipients to check (required)")
	minimum := fs.Int("min", 3, "at least this many (`n`) of the last deliveries bounced")
	last := fs.Int("last", 20, "how many (`n`) of the list's most recent deliveries to look at")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *list == "" {
		return usageErr(fs, "--list is required")
	}
	if *minimum < 1 || *last < 1 {
		return usageErr(fs, "--min and --last must be at least 1")
	}
	return withStore(ctx, *path, errOut, func(cfg *config.Config, db *store.DB) int {
		a, err := address.Parse(*list)
		if err != nil || cfg.List(a) == nil {
			fmt.Fprintf(errOut, "restrictedmail recipients bouncing: --list %s is not a restricted address in %s\n", *list, cfg.File)
			return exitFailure
		}
		rs, err := db.BouncingRecipients(ctx, a.Key(), *last, *minimum)
		if err != nil {
			fmt.Fprintf(errOut, "restrictedmail recipients bouncing: %v\n", err)
			return exitFailure
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RECIPIENT\tBOUNCES\tLAST STATUS\tLAST DIAGNOSTIC")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Rcpt, r.Bounces, dash(r.LastStatus), dash(strings.Join(strings.Fields(r.LastDetail), " ")))
		}
		tw.Flush()
		return exitOK
	})
}
