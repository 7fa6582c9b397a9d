package lmtp

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/reply"
)

// smtpError is the one place the endpoint turns a reply into go-smtp's
// form.
func smtpError(r reply.Reply) *smtp.SMTPError {
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCode(r.Enhanced), Message: r.Text}
}

type session struct {
	s      *Server
	set    *delivery.Settings // one generation for the whole transaction
	from   string
	sender address.Address
	rcpts  []policy.Recipient
	// bounces are the recipients that are a list's bounce address
	// (bounce.go): handled as delivery reports, never redistributed.
	bounces []bounceRcpt
	// inFlight: LMTPData counted this transaction in Server.flight; go-smtp
	// calls Reset once it has written the replies (shutdown.go).
	inFlight bool
}

func (ss *session) Reset() {
	ss.leave()
	ss.set, ss.from, ss.sender, ss.rcpts, ss.bounces = nil, "", address.Address{}, nil, nil
}

func (ss *session) Logout() error {
	ss.leave()
	return nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.Reset()
	ss.set = ss.s.opts.Settings()
	ss.from = from
	if from == "" {
		return nil // the null reverse-path of bounces; judged like any sender
	}
	a, err := address.Parse(from)
	if err != nil {
		return smtpError(reply.BadSender)
	}
	ss.sender = a
	return nil
}

// Rcpt accepts only configured restricted addresses and their bounce
// addresses, with or without a subaddress: the endpoint must never relay
// anywhere else.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.set == nil {
		ss.set = ss.s.opts.Settings()
	}
	rc, err := ss.set.Rules.Resolve(to)
	switch {
	case err != nil:
		return smtpError(reply.BadRecipient)
	case rc.List == nil:
		if l, tag := ss.set.Rules.ResolveBounce(to); l != nil && ss.s.opts.Bounces != nil {
			ss.bounces = append(ss.bounces, bounceRcpt{raw: to, list: l, tag: tag})
			return nil
		}
		return smtpError(reply.NotRestricted)
	}
	ss.rcpts = append(ss.rcpts, rc)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	return errors.New("LMTP session used as SMTP") // go-smtp calls LMTPData in LMTP mode
}

// LMTPData spools the message, then delivers it once per restricted
// address and reports each recipient's outcome.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	if !ss.s.enter() {
		return smtpError(reply.ShuttingDown)
	}
	ss.inFlight = true
	sp, err := spool(ss.set.SpoolDir, r)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se // 552 5.3.4 from go-smtp's size limit
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			// Postfix folds lines at lmtp_line_length_limit (998), so only
			// a broken client gets here; retrying would not help it.
			return smtpError(reply.LineTooLong)
		}
		ss.s.log.Error("spooling a message", "err", err)
		return smtpError(reply.TempLocal)
	}
	defer sp.remove()
	m := delivery.Message{From: ss.from, Sender: ss.sender, QueueID: queueID(sp.reader()), Body: sp.f, Size: sp.size, Sum: sp.sum}
	ss.handleBounces(m, status)
	for _, g := range policy.GroupByList(ss.rcpts) {
		o := ss.s.engine.Deliver(ss.s.base, ss.set, m, g)
		var err error // a nil *SMTPError in an error would not be nil
		if o.Reply != nil {
			err = smtpError(*o.Reply)
		}
		for _, rc := range g.Rcpts {
			status.SetStatus(rc.Raw, err)
		}
	}
	return nil
}

// spooled is a received message on disk, with the SHA-256 of its bytes.
type spooled struct {
	f    *os.File
	size int64
	sum  [sha256.Size]byte
}

// spool writes r to a new file in dir, hashing it on the way. The file is
// not synced: Postfix keeps the message until we answer, so the spool
// needs no durability.
func spool(dir string, r io.Reader) (*spooled, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating spool directory: %w", err)
	}
	f, err := os.CreateTemp(dir, delivery.SpoolPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("creating spool file: %w", err)
	}
	sp := &spooled{f: f}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		sp.remove()
		return nil, fmt.Errorf("spooling message: %w", err)
	}
	sp.size = n
	h.Sum(sp.sum[:0])
	return sp, nil
}

func (sp *spooled) reader() *io.SectionReader { return io.NewSectionReader(sp.f, 0, sp.size) }

func (sp *spooled) remove() {
	name := sp.f.Name()
	sp.f.Close()
	os.Remove(name)
}

// cleanSpool removes files a crash left behind: a spool file belongs to a
// transaction Postfix never got an answer for, so it will hand the message
// over again.
func (s *Server) cleanSpool() error {
	dir := s.opts.Settings().SpoolDir
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), delivery.SpoolPrefix) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
