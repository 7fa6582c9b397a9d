package e2e

import (
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

// TestLogsNameQueueIDsNeverSecrets: after real traffic through Postfix —
// tokens in all three carriers, a guessed token, and a relay reached with
// STARTTLS and a password — the daemon's log (at debug level) holds no
// token and no password, and every delivery line and every milter verdict
// line names the Postfix queue id of its message.
func TestLogsNameQueueIDsNeverSecrets(t *testing.T) {
	t.Parallel()
	const password = "Pa55-w0rd-never-logged"
	w := newWorld(t, worldOpts{
		milter:    true,
		relay:     testsmtp.Options{TLS: testsmtp.StartTLS, Username: "relay@example.org", Password: password},
		relayTLS:  "starttls",
		relayAuth: true,
	})
	tokFile, file := w.issueCLI()
	tokHeader, _ := w.issueCLI()
	tokSub, _ := w.issueCLI()
	const guessed = "nosuchtoken4242guess"

	var queued []string
	for _, c := range []struct {
		name string
		rcpt string
		msg  []byte
	}{
		{"file", list, fileMessage(file)},
		{"header", list, tokenMessage("", "", "X-Restricted-Token: "+tokHeader+"\r\n")},
		{"subaddress", "board+" + tokSub + "@example.org", tokenMessage("", "", "")},
	} {
		res := w.submit(author, []string{c.rcpt}, c.msg)
		if res.Data != nil || res.QueueID == "" {
			t.Fatalf("%s carrier: %v (queue id %q)", c.name, res.Data, res.QueueID)
		}
		queued = append(queued, res.QueueID)
	}
	res := w.submit(author, []string{list}, tokenMessage("", "", "X-Restricted-Token: "+guessed+"\r\n"))
	wantReply(t, "guessed token", res.Data, 550, "5.7.1", "Unknown posting token")
	w.relay.WaitRecipients(t, 3*len(defaultMembers), waitMail)
	w.pf.WaitQueueEmpty(t, waitMail)

	// go-milter's own warnings (here: a client that speaks no milter
	// protocol) reach the daemon's log with a level and the component.
	cfg, problems := config.Load(w.conf)
	if cfg == nil {
		t.Fatal(problems.Error())
	}
	c, err := net.Dial("tcp", cfg.Milter.Addr.Address)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0, 0, 0, 5, 'X', 'j', 'u', 'n', 'k'})
	c.Close()
	w.rm.waitLog("go-milter: ", waitMail)
	if lines := w.rm.log.lines("go-milter: "); len(lines) == 0 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "component=milter") {
		t.Errorf("go-milter's warning is not a structured log line: %q", lines)
	}

	// Once the daemon has exited, exec has copied all it wrote: the log is
	// complete (reading it earlier races the pipe).
	w.rm.stop()
	log := w.rm.log.String()
	lower := strings.ToLower(log)
	for what, secret := range map[string]string{"file token": tokFile, "header token": tokHeader, "subaddress token": tokSub, "guessed token": guessed, "relay password": password} {
		if strings.Contains(lower, strings.ToLower(secret)) {
			t.Errorf("the %s appears in the log", what)
		}
	}
	for _, qid := range queued {
		if lines := w.rm.log.lines("msg=delivery", "queue_id="+qid, "result=250"); len(lines) != 1 {
			t.Errorf("want one delivery line with queue_id=%s, got %q", qid, lines)
		}
		if lines := w.rm.log.lines("component=milter", "queue_id="+qid, "reason=pass"); len(lines) != 1 {
			t.Errorf("want one milter verdict line with queue_id=%s, got %q", qid, lines)
		}
	}
	if lines := w.rm.log.lines("component=milter", "reason=unknown_token"); len(lines) != 1 || !regexp.MustCompile(`queue_id=[0-9A-Za-z]+`).MatchString(lines[0]) {
		t.Errorf("want one rejection line with a queue id, got %q", lines)
	}
}
