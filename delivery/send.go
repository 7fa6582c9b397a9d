package delivery

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/rewrite"
	"github.com/restrictedmail/restrictedmail/store"
)

// SpoolPrefix marks the spool files of the endpoint and the engine, so that
// cleaning a spool directory removes nothing else.
const SpoolPrefix = "rm-"

// send rewrites the message into a spool file and fans it out to the
// pending recipients, recording outcomes as the relay reports them. tok is
// the token spent ("" for a resumed delivery: found again here). The spool
// directory exists: the endpoint spooled the message into it. The relay
// sends in sendCtx (ended when the delivery's lease is lost); the journal
// records in ctx, so that what the relay took is recorded all the same.
func (e *Engine) send(ctx, sendCtx context.Context, set *Settings, m Message, d store.Delivery, pending []string, g policy.Group, tok string) error {
	l := g.List
	if tok == "" {
		var err error
		if tok, err = tokenOf(set.Rules, m, g); err != nil {
			return err
		}
	}
	out, err := os.CreateTemp(set.SpoolDir, SpoolPrefix+"copy-*")
	if err != nil {
		return fmt.Errorf("creating the copy's spool file: %w", err)
	}
	defer func() { out.Close(); os.Remove(out.Name()) }()
	w := bufio.NewWriterSize(out, 64<<10)
	res, err := rewrite.Write(w, m.reader(), CopyFor(set, l, d, tok))
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return fmt.Errorf("writing the copy: %w", err)
	}
	body := func() io.Reader {
		return io.MultiReader(strings.NewReader(res.Signature), io.NewSectionReader(out, 0, res.Size))
	}
	j := newJournal(ctx, e.opts.Store, d.ID, e.opts.Now, e.log)
	// The envelope sender carries the delivery's bounce tag (VERP), so
	// that a bounce names its delivery (policy.BounceEnvelope).
	set.Relay.Send(sendCtx, set.Rules.BounceEnvelope(l, d.Tag), pending, body, e.observed(j.report))
	return j.close()
}

// CopyFor describes the copy of delivery d. Everything in it derives from
// the journal (id, creation time, hide-sender), so that every hand-over of
// a delivery — and a dry run — produces the same copy.
func CopyFor(set *Settings, l *policy.List, d store.Delivery, tok string) rewrite.Copy {
	return rewrite.Copy{
		List: l, Lists: set.Rules.Addresses(), Delimiter: set.Rules.Delimiter,
		HideSender: d.HideSender, Finder: set.Rules.Finder, Token: tok,
		MessageID: "<" + d.ID + "@" + set.Hostname + ">", Date: d.Created,
		Key: set.KeyFor(l.Addr.Domain), SpoolDir: set.SpoolDir,
	}
}
