package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// quitTimeout bounds the polite QUIT at the end of a Send: the relay has
// already answered everything that matters.
const quitTimeout = 5 * time.Second

// conn is one established relay connection: greeted, encrypted and
// authenticated as configured, ready for transactions.
type conn struct {
	w          *wire
	raw        net.Conn
	timeout    time.Duration // for every command, reply and write
	utf8       bool          // the relay offers SMTPUTF8
	eightBit   bool          // the relay offers 8BITMIME
	pipelining bool          // the relay offers PIPELINING
	txns       int           // transactions completed on it
	stop       func() bool   // unregisters the context watcher
	buf        []byte        // for copying messages, reused
}

// connect dials the relay and brings the connection to the point where MAIL
// can be sent. Every failure is temporary; its stage says what failed.
func (cl *Client) connect(ctx context.Context) (*conn, *Error) {
	raw, err := cl.dialer.DialContext(ctx, "tcp", cl.cfg.Address)
	if err != nil {
		return nil, connError(ctx, StageConnect, err)
	}
	// Closing the socket is the one way to interrupt blocking reads and
	// writes when the context is cancelled.
	k := &conn{raw: raw, timeout: cl.cfg.CommandTimeout,
		stop: context.AfterFunc(ctx, func() { raw.Close() })}
	if e := k.setup(ctx, cl); e != nil {
		k.close()
		return nil, e
	}
	return k, nil
}

func (k *conn) setup(ctx context.Context, cl *Client) *Error {
	cfg := cl.cfg
	if strings.ContainsAny(cfg.HeloName, "\r\n") {
		// It would end the command and start another.
		return &Error{Temporary: true, Stage: StageHelo, Message: "the HELO name contains a line break"}
	}
	switch cfg.TLS {
	case "tls":
		tc, e := k.handshake(ctx, cl)
		if e != nil {
			return e
		}
		k.w = newWire(tc, k.timeout)
		if err := k.w.greet(cfg.HeloName); err != nil {
			return connError(ctx, StageHelo, err)
		}
	case "starttls":
		// Greeting, EHLO, STARTTLS and the handshake: a failure of any of
		// them, including a relay that does not offer STARTTLS, is stage
		// "tls". Never a fall back to plain text.
		k.w = newWire(k.raw, k.timeout)
		if err := k.w.greet(cfg.HeloName); err != nil {
			return connError(ctx, StageTLS, err)
		}
		if !k.w.has("STARTTLS") {
			return &Error{Temporary: true, Stage: StageTLS, Message: "the relay does not offer STARTTLS"}
		}
		if _, _, err := k.w.cmd(220, "STARTTLS"); err != nil {
			return connError(ctx, StageTLS, err)
		}
		tc, e := k.handshake(ctx, cl)
		if e != nil {
			return e
		}
		// RFC 3207 section 4.2: forget what was said in clear, say EHLO again.
		k.w = newWire(tc, k.timeout)
		if err := k.w.hello(cfg.HeloName); err != nil {
			return connError(ctx, StageHelo, err)
		}
	default:
		k.w = newWire(k.raw, k.timeout)
		if err := k.w.greet(cfg.HeloName); err != nil {
			return connError(ctx, StageHelo, err)
		}
	}
	if cfg.Username != "" {
		if e := k.auth(ctx, cfg.Username, cfg.Password); e != nil {
			return e
		}
	}
	k.utf8, k.eightBit, k.pipelining = k.w.has("SMTPUTF8"), k.w.has("8BITMIME"), k.w.has("PIPELINING")
	k.buf = make([]byte, 32<<10)
	return nil
}

// handshake runs the TLS handshake on the raw connection, bounded by one
// command timeout. A certificate that does not verify fails here.
func (k *conn) handshake(ctx context.Context, cl *Client) (*tls.Conn, *Error) {
	tc := tls.Client(k.raw, cl.tls)
	hctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, connError(ctx, StageTLS, err)
	}
	return tc, nil
}

// auth logs in with PLAIN if offered, else LOGIN, and only over TLS.
func (k *conn) auth(ctx context.Context, user, pass string) *Error {
	if _, ok := k.w.conn.(*tls.Conn); !ok {
		return &Error{Temporary: true, Stage: StageAuth,
			Message: "not sending credentials over a connection without TLS"}
	}
	var mech sasl.Client
	switch {
	case k.w.supportsAuth(sasl.Plain):
		mech = sasl.NewPlainClient("", user, pass)
	case k.w.supportsAuth(sasl.Login):
		mech = &loginClient{user: user, pass: pass}
	default:
		return &Error{Temporary: true, Stage: StageAuth, Message: "the relay offers neither AUTH PLAIN nor AUTH LOGIN"}
	}
	if err := k.w.auth(mech); err != nil {
		return connError(ctx, StageAuth, err) // never permanent: see replyError
	}
	return nil
}

// quit ends the conversation politely, unless the context is done.
func (k *conn) quit(ctx context.Context) {
	if ctx.Err() == nil {
		k.w.timeout = min(k.timeout, quitTimeout)
		k.w.cmd(221, "QUIT")
	}
	k.close()
}

// close closes the socket. With TLS, no close_notify is sent: the relay
// may have stopped reading, and QUIT has ended the conversation already.
func (k *conn) close() {
	k.stop()
	k.raw.Close()
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
