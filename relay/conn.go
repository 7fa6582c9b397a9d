package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// quitTimeout bounds the polite QUIT at the end of a Send: the relay has
// already answered everything that matters.
const quitTimeout = 5 * time.Second

// conn is one established relay connection: greeted, encrypted and
// authenticated as configured, ready for transactions.
type conn struct {
	c       *smtp.Client
	raw     net.Conn
	timeout time.Duration // for every command, reply and write
	utf8    bool          // the relay offers SMTPUTF8
	txns    int           // transactions completed on it
	stop    func() bool   // unregisters the context watcher
}

// connect dials the relay and brings the connection to the point where MAIL
// can be sent. Every failure is temporary; its stage says what failed.
func (cl *Client) connect(ctx context.Context) (*conn, *Error) {
	raw, err := cl.dialer.DialContext(ctx, "tcp", cl.cfg.Address)
	if err != nil {
		return nil, connError(ctx, StageConnect, err)
	}
	// Closing the socket is the one way to interrupt go-smtp's blocking
	// reads and writes when the context is cancelled.
	k := &conn{raw: raw, timeout: cl.cfg.CommandTimeout.D(),
		stop: context.AfterFunc(ctx, func() { raw.Close() })}
	if e := k.setup(ctx, cl); e != nil {
		k.close()
		return nil, e
	}
	return k, nil
}

func (k *conn) setup(ctx context.Context, cl *Client) *Error {
	cfg := cl.cfg
	switch cfg.TLS {
	case "tls":
		tc := tls.Client(k.raw, cl.tls)
		hctx, cancel := context.WithTimeout(ctx, k.timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return connError(ctx, StageTLS, err)
		}
		k.c = smtp.NewClient(tc)
	case "starttls":
		// NewClientStartTLS reads the greeting, sends "EHLO localhost" (the
		// name cannot be chosen before TLS), then STARTTLS, all in one call:
		// its failures, including a server without STARTTLS, are all stage
		// "tls". It runs under go-smtp's 5-minute default timeouts, as the
		// Client is not ours before it returns: a watchdog holds it to one
		// command timeout per exchange. The handshake itself happens at
		// the first write, in Hello.
		limit := 3 * k.timeout
		watchdog := time.AfterFunc(limit, func() { k.raw.Close() })
		c, err := smtp.NewClientStartTLS(k.raw, cl.tls)
		if !watchdog.Stop() && ctx.Err() == nil {
			return &Error{Temporary: true, Stage: StageTLS, Message: fmt.Sprintf("timeout: no STARTTLS within %v", limit)}
		}
		if err != nil {
			return connError(ctx, StageTLS, err)
		}
		k.c = c
	default:
		k.c = smtp.NewClient(k.raw)
	}
	// go-smtp's defaults are 5 and 12 minutes; it sets the deadline
	// before each command and clears it after the reply.
	k.c.CommandTimeout, k.c.SubmissionTimeout = k.timeout, k.timeout
	if err := k.c.Hello(cfg.HeloName); err != nil {
		if st, ok := k.c.TLSConnectionState(); ok && !st.HandshakeComplete {
			return connError(ctx, StageTLS, err) // e.g. the certificate
		}
		return connError(ctx, StageHelo, err)
	}
	if cfg.Username != "" {
		if e := k.auth(ctx, cfg.Username, cfg.Password); e != nil {
			return e
		}
	}
	k.utf8, _ = k.c.Extension("SMTPUTF8")
	return nil
}

// auth logs in with PLAIN if offered, else LOGIN. go-smtp's Auth would send
// the password over plain text if asked: the TLS check is ours.
func (k *conn) auth(ctx context.Context, user, pass string) *Error {
	if _, ok := k.c.TLSConnectionState(); !ok {
		return &Error{Temporary: true, Stage: StageAuth,
			Message: "not sending credentials over a connection without TLS"}
	}
	var mech sasl.Client
	switch {
	case k.c.SupportsAuth(sasl.Plain):
		mech = sasl.NewPlainClient("", user, pass)
	case k.c.SupportsAuth(sasl.Login):
		mech = &loginClient{user: user, pass: pass}
	default:
		return &Error{Temporary: true, Stage: StageAuth, Message: "the relay offers neither AUTH PLAIN nor AUTH LOGIN"}
	}
	if err := k.c.Auth(mech); err != nil {
		return connError(ctx, StageAuth, err) // never permanent: see replyError
	}
	return nil
}

// quit ends the conversation politely, unless the context is done.
func (k *conn) quit(ctx context.Context) {
	if ctx.Err() == nil {
		k.c.CommandTimeout = min(k.timeout, quitTimeout)
		k.c.Quit()
	}
	k.close()
}

// close closes the socket first: closing go-smtp's TLS layer first would
// try to send close_notify to a relay that may have stopped reading.
func (k *conn) close() {
	k.stop()
	k.raw.Close()
	if k.c != nil {
		k.c.Close()
	}
}

// deadlineWriter gives every write of the message a fresh deadline: a
// relay that stops reading fails the transfer after the command timeout,
// however long the whole message takes (RFC 5321 section 4.5.3.2.5 times
// each block, not the transfer). go-smtp sets no deadline for the data.
type deadlineWriter struct {
	k *conn
	w io.Writer
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.k.raw.SetWriteDeadline(time.Now().Add(d.k.timeout))
	return d.w.Write(p)
}

// loginClient is AUTH LOGIN without an initial response, answering the
// username then the password to whatever the two challenges say. go-sasl's
// LOGIN client insists on the exact challenge "Password:", which not every
// server sends.
type loginClient struct {
	user, pass string
	step       int
}

func (l *loginClient) Start() (string, []byte, error) { return sasl.Login, nil, nil }

func (l *loginClient) Next([]byte) ([]byte, error) {
	l.step++
	switch l.step {
	case 1:
		return []byte(l.user), nil
	case 2:
		return []byte(l.pass), nil
	}
	return nil, errors.New("relay: unexpected third AUTH LOGIN challenge")
}
