package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/notice"
)

// signInMailer sends the web page's sign-in mails through the relay of
// the generation in force, DKIM-signed with the sender domain's key like
// the copies (web.Mailer). The sender is [web] sign_in_from, by default
// the first list's bounce address, which also collects their bounces: it
// is the envelope sender too.
type signInMailer struct {
	gen  func() *generation.Generation
	now  func() time.Time
	host string
}

// Send writes a plain-text mail to to and hands it to the relay; it fails
// unless the relay accepted it.
func (m *signInMailer) Send(ctx context.Context, to address.Address, subject, body string) error {
	g := m.gen()
	from := g.Config.Web.From
	if err := notice.Send(ctx, g.Relay, g.Delivery.KeyFor(from.Domain), signInMail(from, to, subject, body, m.now(), m.host)); err != nil {
		return fmt.Errorf("relaying the sign-in mail: %w", err)
	}
	return nil
}

// signInMail is the notice that carries a sign-in link.
func signInMail(from, to address.Address, subject, body string, now time.Time, host string) notice.Mail {
	return notice.Mail{
		From: from.String(), Envelope: from.String(), To: to.String(), Subject: subject, Text: body,
		Hostname: host, Date: now, Kind: "signin",
	}
}
