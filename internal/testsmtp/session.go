package testsmtp

import (
	"io"
	"slices"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// session is one go-smtp session: from EHLO to the end of the connection,
// or to STARTTLS, after which go-smtp starts a new one.
type session struct {
	s     *Server
	conn  *smtp.Conn
	id    int
	user  string // authenticated username
	from  string
	opts  smtp.MailOptions
	rcpts []string
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.connIDs[c] // the same *smtp.Conn before and after STARTTLS
	if !ok {
		id = len(s.connIDs) + 1
		s.connIDs[c] = id
	}
	return &session{s: s, conn: c, id: id}, nil
}

// reply builds a refusal, fresh each time: no shared package-level values.
func reply(code, class, subject, detail int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{class, subject, detail}, Message: msg}
}

func (ss *session) tls() bool {
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

// AuthMechanisms advertises AUTH only over TLS, as real relays do.
func (ss *session) AuthMechanisms() []string {
	switch {
	case ss.s.opts.Username == "" || (!ss.tls() && !ss.s.opts.AuthInClear):
		return nil
	case ss.s.opts.AuthMechanisms != nil:
		return ss.s.opts.AuthMechanisms
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if !ss.tls() {
		ss.s.set(func() { ss.s.plainAuth = true })
		return nil, reply(538, 5, 7, 11, "Encryption required")
	}
	if !slices.Contains(ss.AuthMechanisms(), mech) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	check := func(user, pass string) error {
		if user != ss.s.opts.Username || pass != ss.s.opts.Password {
			return smtp.ErrAuthFailed
		}
		ss.user = user
		return nil
	}
	if mech == sasl.Login {
		return &loginServer{check: check}, nil
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if identity != "" && identity != user {
			return smtp.ErrAuthFailed
		}
		return check(user, pass)
	}), nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.s.opts.Username != "" && ss.user == "" {
		return reply(530, 5, 7, 0, "Authentication required")
	}
	if !opts.UTF8 && !isASCII(from) {
		return reply(550, 5, 6, 7, "testsmtp: non-ASCII address without SMTPUTF8")
	}
	if err := ss.s.command(&ss.s.mailHook, from); err != nil {
		return err
	}
	ss.from, ss.opts, ss.rcpts = from, *opts, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !ss.opts.UTF8 && !isASCII(to) {
		return reply(550, 5, 6, 7, "testsmtp: non-ASCII address without SMTPUTF8")
	}
	if err := ss.s.command(&ss.s.rcptHook, to); err != nil {
		return err
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

// command runs the MAIL or RCPT hook, read under the lock and run outside
// it (hooks may call the Server), and turns a nil reply into a nil error.
func (s *Server) command(hook *func(string) *smtp.SMTPError, arg string) error {
	s.mu.Lock()
	f := *hook
	s.mu.Unlock()
	if f != nil {
		if reply := f(arg); reply != nil {
			return reply
		}
	}
	return nil
}

func (ss *session) Data(r io.Reader) error {
	if err := ss.s.stall(); err != nil {
		return err
	}
	m := Message{Conn: ss.id, From: ss.from, Rcpts: slices.Clone(ss.rcpts), TLS: ss.tls(),
		AuthUser: ss.user, Body: ss.opts.Body, UTF8: ss.opts.UTF8}
	var err error
	if ss.s.opts.DiscardData {
		_, err = io.Copy(io.Discard, r)
	} else {
		m.Data, err = io.ReadAll(r)
	}
	if err != nil {
		return err
	}
	return ss.s.endOfData(ss.conn, m)
}

func (ss *session) Reset()        { ss.from, ss.opts, ss.rcpts = "", smtp.MailOptions{}, nil }
func (ss *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks: the
// username (possibly as the initial response), then the password.
type loginServer struct {
	check func(user, pass string) error
	user  []byte
	step  int
}

func (l *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	l.step++
	switch {
	case l.step == 1 && resp == nil:
		return []byte("Username:"), false, nil
	case l.step <= 2:
		l.user, l.step = resp, 2
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(string(l.user), string(resp))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
