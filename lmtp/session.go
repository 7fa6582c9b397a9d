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
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/token"
)

// Replies the endpoint sends outside the policy's verdicts.
var (
	errNotRestricted = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Recipient is not a restricted address served here"}
	errBadAddress    = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	errBadSender     = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	errLineTooLong   = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message has a line longer than 2000 characters"}
	errTempLocal     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, please try again later"}
)

// rcpt is one accepted RCPT TO.
type rcpt struct {
	raw   string // exactly as given, for SetStatus
	list  *config.List
	token string // subaddress token, if any
}

type session struct {
	s      *Server
	cfg    *config.Config
	from   string
	sender address.Address
	rcpts  []rcpt
	// inFlight: LMTPData counted this transaction in Server.flight; go-smtp
	// calls Reset once it has written the replies (shutdown.go).
	inFlight bool
}

func (ss *session) Reset() {
	ss.leave()
	ss.cfg, ss.from, ss.sender, ss.rcpts = nil, "", address.Address{}, nil
}

func (ss *session) Logout() error {
	ss.leave()
	return nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.Reset()
	ss.cfg = ss.s.opts.Config()
	ss.from = from
	if from == "" {
		return nil // the null reverse-path of bounces; judged like any sender
	}
	a, err := address.Parse(from)
	if err != nil {
		return errBadSender
	}
	ss.sender = a
	return nil
}

// Rcpt accepts only configured restricted addresses, with or without a
// subaddress: the endpoint must never relay anywhere else.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.cfg == nil {
		ss.cfg = ss.s.opts.Config()
	}
	a, err := address.Parse(to)
	if err != nil {
		return errBadAddress
	}
	l, _ := ss.cfg.ListFor(a)
	if l == nil {
		return errNotRestricted
	}
	_, tok := token.Subaddress(a, ss.cfg.RecipientDelimiter)
	if l.Addr.Equal(a) {
		tok = ""
	}
	ss.rcpts = append(ss.rcpts, rcpt{raw: to, list: l, token: tok})
	return nil
}

func (ss *session) Data(r io.Reader) error {
	return errors.New("LMTP session used as SMTP") // go-smtp calls LMTPData in LMTP mode
}

// LMTPData spools the message, then delivers it once per restricted
// address and reports each recipient's outcome.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	if !ss.s.enter() {
		return errShuttingDown
	}
	ss.inFlight = true
	sp, err := spool(ss.cfg.SpoolDir(), r)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se // 552 5.3.4 from go-smtp's size limit
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			// Postfix folds lines at lmtp_line_length_limit (998), so only
			// a broken client gets here; retrying would not help it.
			return errLineTooLong
		}
		ss.s.log.Error("spooling a message", "err", err)
		return errTempLocal
	}
	defer sp.remove()
	qid := queueID(sp.reader())
	for _, g := range groupByList(ss.rcpts) {
		var err error // a nil *SMTPError in an error would not be nil
		if reply := ss.s.deliver(ss.cfg, envelope{from: ss.from, sender: ss.sender, queueID: qid}, sp, g); reply != nil {
			err = reply
		}
		for _, rc := range g.rcpts {
			status.SetStatus(rc.raw, err)
		}
	}
	return nil
}

// group is the recipients of one transaction that name one list (board@
// and board+token@ are one delivery).
type group struct {
	list  *config.List
	rcpts []rcpt
	token string // the first subaddress token among them; then the token judged
}

func groupByList(rs []rcpt) []*group {
	var out []*group
	by := map[string]*group{}
	for _, r := range rs {
		k := r.list.Addr.Key()
		g := by[k]
		if g == nil {
			g = &group{list: r.list}
			by[k] = g
			out = append(out, g)
		}
		g.rcpts = append(g.rcpts, r)
		if g.token == "" {
			g.token = r.token
		}
	}
	return out
}

// spooled is a received message on disk (or, for a preview, in memory),
// with the SHA-256 of its bytes.
type spooled struct {
	f    *os.File // nil for a preview
	r    io.ReaderAt
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
	f, err := os.CreateTemp(dir, spoolPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("creating spool file: %w", err)
	}
	sp := &spooled{f: f, r: f}
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

func (sp *spooled) reader() *io.SectionReader { return io.NewSectionReader(sp.r, 0, sp.size) }

func (sp *spooled) remove() {
	name := sp.f.Name()
	sp.f.Close()
	os.Remove(name)
}

// spoolPrefix marks our files, so that cleanSpool removes nothing else.
const spoolPrefix = "rm-"

// cleanSpool removes files a crash left behind: a spool file belongs to a
// transaction Postfix never got an answer for, so it will hand the message
// over again.
func (s *Server) cleanSpool() error {
	dir := s.opts.Config().SpoolDir()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), spoolPrefix) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
