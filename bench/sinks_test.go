//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// postfixSink is Postfix's smtp-sink, counting messages. With -c it prints
// "sess=N quit=N mesg=N\r" whenever a message ends, which the reader
// turns into a counter that waiters are woken on.
type postfixSink struct {
	addr string
	cmd  *exec.Cmd

	mu      sync.Mutex
	msgs    int
	changed chan struct{} // closed and replaced when msgs changes
	exited  chan struct{}
}

func startPostfixSink(t *testing.T) *postfixSink {
	t.Helper()
	s := &postfixSink{addr: freeAddr(t), changed: make(chan struct{}), exited: make(chan struct{})}
	s.cmd = exec.Command("smtp-sink", "-u", "postfix", "-c", s.addr, "256")
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting smtp-sink: %v", err)
	}
	go s.read(out)
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
	})
	// smtp-sink has no readiness signal: wait until it accepts.
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.Dial("tcp4", s.addr)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink does not accept connections on %s: %v", s.addr, err)
		}
		<-tick.C
	}
}

func (s *postfixSink) read(r interface{ Read([]byte) (int, error) }) {
	defer close(s.exited)
	sc := bufio.NewScanner(r)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		i := bytes.LastIndex(sc.Bytes(), []byte("mesg="))
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(string(sc.Bytes()[i+5:]))
		if err != nil {
			continue
		}
		s.mu.Lock()
		if n != s.msgs {
			s.msgs = n
			close(s.changed)
			s.changed = make(chan struct{})
		}
		s.mu.Unlock()
	}
	s.cmd.Wait()
}

// messages is the number of messages received so far.
func (s *postfixSink) messages() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs
}

// waitMessages waits until at least n messages have been received.
func (s *postfixSink) waitMessages(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, changed := s.msgs, s.changed
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-s.exited:
			t.Fatalf("smtp-sink exited with %d messages received, waiting for %d", got, n)
		case <-timer.C:
			t.Fatalf("smtp-sink: %d messages after %v, want %d", got, timeout, n)
		}
	}
}
