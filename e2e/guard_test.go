package e2e

import (
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// submitFrom sends a message into Postfix from the loopback address
// local (127.0.0.2 is another client than 127.0.0.1 for Postfix) and
// returns the reply to RCPT and to the message.
func submitFrom(t *testing.T, addr, local, from, rcpt string, msg []byte) (rcptErr, dataErr error) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	if rcptErr = c.Rcpt(rcpt, nil); rcptErr != nil {
		return rcptErr, nil
	}
	w, err := c.Data()
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(msg); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return nil, c.Quit()
}

// TestGuessingThroughPostfix: Postfix gives the milter the client's
// address ({client_addr}, asked for at RCPT); after tokens.guess_limit
// unknown subaddress tokens from 127.0.0.1, its next guess gets 450 4.7.1
// at RCPT — but a valid token from the same client is delivered, and so is
// one from another client (127.0.0.2, another sender).
func TestGuessingThroughPostfix(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{milter: true, set: map[string]string{"tokens.guess_limit": "2"}})
	a := newAudit(t, w, "guessing")
	toks := a.issue(2)
	msg := func(rcpt string) []byte {
		_, m := a.message("guess-"+rcpt+"@example.net", "", "none")
		return m
	}
	for _, guess := range []string{"guess1aaaaaaaaaaaaaaaaaaaaaaaaaaa", "guess2aaaaaaaaaaaaaaaaaaaaaaaaaaa"} {
		rcpt := "board+" + guess + "@example.org"
		rerr, _ := submitFrom(t, w.pf.SMTPAddr(), "127.0.0.1", "mallory@example.net", rcpt, msg(rcpt))
		wantReply(t, "guess", rerr, 550, "5.7.1", "Unknown posting token")
	}
	guess := "board+guess3aaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org"
	rerr, _ := submitFrom(t, w.pf.SMTPAddr(), "127.0.0.1", "mallet@example.net", guess, msg(guess))
	wantReply(t, "blocked client", rerr, 450, "4.7.1", "Too many invalid posting tokens")

	valid := "board+" + toks[0] + "@example.org"
	if rerr, derr := submitFrom(t, w.pf.SMTPAddr(), "127.0.0.1", "mallet@example.net", valid, msg(valid)); rerr != nil || derr != nil {
		t.Fatalf("a valid token from the blocked client: RCPT %v, DATA %v", rerr, derr)
	}
	other := "board+" + toks[1] + "@example.org"
	rerr, derr := submitFrom(t, w.pf.SMTPAddr(), "127.0.0.2", author, other, msg(other))
	if rerr != nil || derr != nil {
		t.Fatalf("another client with a valid token: RCPT %v, DATA %v", rerr, derr)
	}
	w.relay.WaitRecipients(t, 2*len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)
	w.rm.stop() // the log is complete once the daemon has exited
	if lines := w.rm.log.lines("too many unknown posting tokens", "client=127.0.0.1"); len(lines) != 1 {
		t.Errorf("want one log line for the block, got %q", lines)
	}
}
