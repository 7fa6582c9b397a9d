package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/token"
)

// counter counts a traffic generator's transactions; tests wait on it.
type counter struct {
	mu   sync.Mutex
	cond *sync.Cond
	n    int
	err  error // the first failure; the generator stops on it
	done bool
}

func newCounter() *counter {
	c := &counter{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *counter) add(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && c.err == nil {
		c.err = err
	}
	if err == nil {
		c.n++
	}
	c.cond.Broadcast()
}

func (c *counter) finish() { c.mu.Lock(); c.done = true; c.cond.Broadcast(); c.mu.Unlock() }

func (c *counter) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// waitFor waits until n transactions succeeded, a failure, or timeout.
func (c *counter) waitFor(t *testing.T, what string, n int, timeout time.Duration) {
	t.Helper()
	stop := time.AfterFunc(timeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer stop.Stop()
	deadline := time.Now().Add(timeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.n < n && c.err == nil && !c.done && time.Now().Before(deadline) {
		c.cond.Wait()
	}
	if c.err != nil {
		t.Fatalf("%s failed: %v", what, c.err)
	}
	if c.n < n {
		t.Fatalf("%s: %d transactions within %s, want %d", what, c.n, timeout, n)
	}
}

func reloadMessage(tok, subject string) []byte {
	return []byte("From: Alice <" + author + ">\r\nTo: Example Board <" + list + ">\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <" + token.NewID() + "@example.net>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" +
		"X-Restricted-Token: " + tok + "\r\n\r\nTraffic during a reload.\r\n")
}

// lmtpTraffic sends message after message over ONE LMTP connection until
// stop is closed; any error — a reset connection, a non-250 reply — is a
// failure.
func lmtpTraffic(addr, tok string, stop <-chan struct{}, c *counter) {
	defer c.finish()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		c.add(err)
		return
	}
	lc := smtp.NewClientLMTP(conn)
	defer lc.Close()
	if err := lc.Hello("mx.example.org"); err != nil {
		c.add(err)
		return
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			c.add(lc.Quit())
			return
		default:
		}
		err := func() error {
			if err := lc.Mail(author, nil); err != nil {
				return fmt.Errorf("MAIL: %w", err)
			}
			if err := lc.Rcpt(list, nil); err != nil {
				return fmt.Errorf("RCPT: %w", err)
			}
			w, err := lc.Data()
			if err != nil {
				return fmt.Errorf("DATA: %w", err)
			}
			if _, err := w.Write(reloadMessage(tok, fmt.Sprintf("lmtp traffic %d", i))); err != nil {
				return fmt.Errorf("writing: %w", err)
			}
			_, err = w.CloseWithLMTPResponse()
			return err
		}()
		c.add(err)
		if err != nil {
			return
		}
	}
}

// milterTraffic runs messages — ordinary and restricted with a valid token
// — over ONE milter connection until stop is closed; every one must be
// accepted.
func milterTraffic(addr, tok string, stop <-chan struct{}, c *counter) {
	defer c.finish()
	s, err := gomilter.NewClient("tcp", addr).Session(nil)
	if err != nil {
		c.add(err)
		return
	}
	defer s.Close()
	if _, err := s.Conn("client.example.net", gomilter.FamilyInet, 25, "192.0.2.1"); err != nil {
		c.add(err)
		return
	}
	if _, err := s.Helo("client.example.net"); err != nil {
		c.add(err)
		return
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		rcpt := list
		if i%2 == 1 {
			rcpt = "someone@example.org"
		}
		c.add(milterOnce(s, rcpt, reloadMessage(tok, "milter traffic")))
		if c.err != nil {
			return
		}
	}
}

func milterOnce(s *gomilter.ClientSession, rcpt string, msg []byte) error {
	if _, err := s.Mail(author, ""); err != nil {
		return err
	}
	if act, err := s.Rcpt(rcpt, ""); err != nil || act.Type != gomilter.ActionContinue {
		return fmt.Errorf("RCPT %s: %v %v", rcpt, act, err)
	}
	act, err := s.DataStart()
	if err != nil {
		return err
	}
	if act.Type == gomilter.ActionAccept {
		return s.Abort(nil) // ordinary mail: decided at DATA
	}
	head, body, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(head), "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if _, err := s.HeaderField(k, v, nil); err != nil {
			return err
		}
	}
	if act, err = s.HeaderEnd(); err != nil {
		return err
	}
	if act.Type == gomilter.ActionAccept {
		return s.Abort(nil) // the token header decided it, as Postfix would see
	}
	if _, act, err = s.BodyReadFrom(bytes.NewReader(body)); err != nil {
		return err
	}
	if act.Type != gomilter.ActionAccept && act.Type != gomilter.ActionContinue {
		return fmt.Errorf("restricted message not accepted: %v", act)
	}
	return nil
}

// postfixTraffic submits restricted messages to Postfix until stop is
// closed; each must be accepted (the milter consulted on the way).
func postfixTraffic(w *world, tok string, stop <-chan struct{}, c *counter) {
	defer c.finish()
	for {
		select {
		case <-stop:
			return
		default:
		}
		res := w.submit(author, []string{list}, reloadMessage(tok, "postfix traffic"))
		c.add(res.Data)
		if res.Data != nil {
			return
		}
	}
}

// TestReloadWhileMailFlows: SIGHUP with a good configuration (new list name,
// a new member in the recipients file) and then with one that fails
// validation, while LMTP and milter connections carry message after message
// and Postfix takes submissions. No connection is cut, no transaction
// fails, the good configuration applies to the next message, and the
// broken one is refused with the good one kept.
func TestReloadWhileMailFlows(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, membersFile: 3})
	tok, _ := w.issueCLI("--uses", "100000", "--ttl", "0")
	cfg, problems := config.Load(w.conf)
	if cfg == nil {
		t.Fatal(problems.Error())
	}
	stop := make(chan struct{})
	lmtpC, milterC, postfixC := newCounter(), newCounter(), newCounter()
	go lmtpTraffic(cfg.LMTP.Addr.Address, tok, stop, lmtpC)
	go milterTraffic(cfg.Milter.Addr.Address, tok, stop, milterC)
	go postfixTraffic(w, tok, stop, postfixC)
	stopped := false
	stopTraffic := func() {
		if !stopped {
			stopped = true
			close(stop)
		}
	}
	defer stopTraffic()
	flowing := func(what string) {
		t.Helper()
		for _, c := range []struct {
			name string
			c    *counter
		}{{"LMTP connection", lmtpC}, {"milter connection", milterC}, {"Postfix submissions", postfixC}} {
			c.c.waitFor(t, c.name+" "+what, c.c.count()+3, waitMail)
		}
	}
	flowing("before the reloads")

	// A good configuration: the list renamed, a member added to the
	// recipients file.
	members := w.dir + "/members.txt"
	data, err := os.ReadFile(members)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(members, append(data, "late@example.com\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(w.conf)
	if err != nil {
		t.Fatal(err)
	}
	renamed := bytes.Replace(good, []byte(`name = "Example Board"`), []byte(`name = "Reloaded Board"`), 1)
	if bytes.Equal(renamed, good) {
		t.Fatal("the configuration has no list name to change")
	}
	if err := os.WriteFile(w.conf, renamed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.rm.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	w.rm.waitLog("configuration reloaded", waitMail)
	flowing("after the good reload")
	w.checkNextMessage(tok, "after-good-reload")

	// A configuration that fails validation is refused; the good one stays.
	broken := bytes.Replace(renamed, []byte(`tls = "none"`), []byte(`tls = "sometimes"`), 1)
	if bytes.Equal(broken, renamed) {
		t.Fatal("the configuration has no relay.tls to break")
	}
	if err := os.WriteFile(w.conf, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.rm.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	w.rm.waitLog("reload refused", waitMail)
	flowing("after the refused reload")
	w.checkNextMessage(tok, "after-refused-reload")

	stopTraffic()
	for _, c := range []*counter{lmtpC, milterC, postfixC} {
		c.mu.Lock()
		for !c.done {
			c.cond.Wait()
		}
		err := c.err
		c.mu.Unlock()
		if err != nil {
			t.Errorf("traffic failed: %v", err)
		}
	}
	w.pf.WaitQueueEmpty(t, waitMail)
	if isClosed(w.rm.exited) {
		t.Fatalf("the daemon exited: %v", w.rm.err)
	}
	if lines := w.rm.log.lines("relay.tls", "sometimes"); len(lines) != 1 || !strings.Contains(lines[0], "reload refused") {
		t.Errorf("the refusal does not name the problem: %q", lines)
	}
	for _, bad := range []string{"delivery refused", "delivery deferred", "level=WARN msg=delivery", "level=ERROR msg=delivery", "recipient rejected", "message rejected", "message deferred"} {
		if lines := w.rm.log.lines(bad); len(lines) != 0 {
			t.Errorf("log has %q lines: %q", bad, lines[:min(3, len(lines))])
		}
	}
	t.Logf("during the test: %d LMTP transactions on one connection, %d milter messages on one connection, %d Postfix submissions",
		lmtpC.count(), milterC.count(), postfixC.count())
}

// checkNextMessage sends one message through Postfix and checks that its
// copies use the reloaded configuration: the new name and the new member.
func (w *world) checkNextMessage(tok, subject string) {
	w.t.Helper()
	if res := w.submit(author, []string{list}, reloadMessage(tok, subject)); res.Data != nil {
		w.t.Fatalf("%s: Postfix refused: %v", subject, res.Data)
	}
	deadline := time.Now().Add(waitMail)
	for {
		var rcpts []string
		var from string
		for _, m := range w.relay.Messages() {
			if bytes.Contains(m.Data, []byte("Subject: "+subject+"\r\n")) {
				rcpts = append(rcpts, m.Rcpts...)
				get, _ := copyParts(w.t, m.Data)
				from = strings.Join(get("From"), ",")
			}
		}
		if len(rcpts) == 4 {
			exactlyOnce(w.t, rcpts, append(generated(3), "late@example.com"))
			if from != `"Alice via Reloaded Board" <board@example.org>` {
				w.t.Errorf("%s: From = %q, want the reloaded list name", subject, from)
			}
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: the relay got copies for %v, want the 3 members and late@example.com", subject, rcpts)
		}
		w.relay.WaitRecipients(w.t, len(w.relay.Recipients())+1, waitMail)
	}
}
