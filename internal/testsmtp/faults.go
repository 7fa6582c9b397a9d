package testsmtp

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// faults is the misbehaviour the server has been told to show; guarded by
// Server.mu.
type faults struct {
	connectHook func(n int) *smtp.SMTPError
	mailHook    func(from string) *smtp.SMTPError
	rcptHook    func(rcpt string) *smtp.SMTPError
	dataHook    func(m Message) error
	dropIn      int // DATA transfers before the dropped one; -1: none armed
	delay       time.Duration
}

// SetConnectHook decides for the n-th accepted connection (from 1) whether
// to serve it (nil) or to send it this reply, which should carry an
// enhanced code, instead of the greeting and close it.
func (s *Server) SetConnectHook(f func(n int) *smtp.SMTPError) { s.set(func() { s.connectHook = f }) }

// SetMailHook lets f refuse MAIL FROM (non-nil reply) or accept it (nil).
func (s *Server) SetMailHook(f func(from string) *smtp.SMTPError) { s.set(func() { s.mailHook = f }) }

// SetRcptHook lets f refuse RCPT TO (non-nil reply) or accept it (nil).
func (s *Server) SetRcptHook(f func(rcpt string) *smtp.SMTPError) { s.set(func() { s.rcptHook = f }) }

// SetDataHook lets f refuse a transaction once its DATA has been read: a
// non-nil error is the final reply (an *smtp.SMTPError as is, another error
// as go-smtp's 554) and the message is not recorded.
func (s *Server) SetDataHook(f func(m Message) error) { s.set(func() { s.dataHook = f }) }

// DropAfter arms a one-shot fault: the next n DATA transfers are answered
// normally; the one after that gets no reply: its TCP connection is closed
// once the data has been read, and the message is not recorded.
func (s *Server) DropAfter(n int) { s.set(func() { s.dropIn = n }) }

// DelayData makes the server wait d once DATA has begun, before reading the
// message: a client with a small message waits for the final reply, one
// with a message larger than the socket buffers is stuck writing. Close
// ends the wait at once.
func (s *Server) DelayData(d time.Duration) { s.set(func() { s.delay = d }) }

func (s *Server) set(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// endOfData applies the drop and the DATA hook to m, which came over c, and
// records it.
func (s *Server) endOfData(c *smtp.Conn, m Message) error {
	s.mu.Lock()
	drop := s.dropIn == 0
	if s.dropIn >= 0 {
		s.dropIn--
	}
	hook := s.dataHook
	s.mu.Unlock()
	if drop {
		// Close the socket under any TLS layer: no reply, no close_notify,
		// as when a relay crashes.
		conn := c.Conn()
		if tc, ok := conn.(*tls.Conn); ok {
			conn = tc.NetConn()
		}
		conn.Close()
		return errors.New("testsmtp: connection dropped")
	}
	if hook != nil {
		if err := hook(m); err != nil {
			return err
		}
	}
	s.record(m)
	return nil
}

// stall waits as DelayData says, or until Close.
func (s *Server) stall() error {
	s.mu.Lock()
	d := s.delay
	s.mu.Unlock()
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-s.done:
		return errors.New("testsmtp: server closed")
	}
}

// listener counts connections and applies the connect hook. In ImplicitTLS
// mode it wraps the TLS listener, so that a refusal goes out over TLS and
// go-smtp gets the *tls.Conn it type-asserts.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.s.mu.Lock()
		l.s.conns++
		n, hook := l.s.conns, l.s.connectHook
		l.s.mu.Unlock()
		if hook != nil {
			if reply := hook(n); reply != nil {
				go refuse(c, reply)
				continue
			}
		}
		if l.s.opts.No8BitMIME {
			c = &no8BitConn{Conn: c}
		}
		return c, nil
	}
}

func refuse(c net.Conn, reply *smtp.SMTPError) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	e := reply.EnhancedCode
	fmt.Fprintf(c, "%d %d.%d.%d %s\r\n", reply.Code, e[0], e[1], e[2], reply.Message)
}

// no8BitConn drops the 8BITMIME line of EHLO replies: go-smtp writes and
// flushes each reply line on its own, and 8BITMIME is never the last one.
type no8BitConn struct{ net.Conn }

func (c *no8BitConn) Write(p []byte) (int, error) {
	if bytes.Equal(p, []byte("250-8BITMIME\r\n")) {
		return len(p), nil
	}
	return c.Conn.Write(p)
}
