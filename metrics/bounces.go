package metrics

import "github.com/restrictedmail/restrictedmail/bounce"

var _ bounce.Observer = (*Metrics)(nil)

const bouncesHelp = `Mail to the lists' bounce addresses by list and kind: per recipient of a delivery report, "failed" (a permanent failure recorded), "delayed", "delivered" (a late success after a delay); per message, "ignored" (a report that changed nothing: unknown or forged tag, a recipient not in the delivery), "auto_reply", "forwarded" (to bounce_forward), "dropped".`

// Bounce counts one bounce of list by kind.
func (m *Metrics) Bounce(list, kind string) { m.bounces.WithLabelValues(list, kind).Inc() }
