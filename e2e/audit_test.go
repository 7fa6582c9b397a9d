package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the journal is read directly: lmtp has no query for it

	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/token"
)

// An audit follows every message of one fault scenario from its
// submission to Postfix to the end, when the fault is cleared and Postfix's
// queue is empty, and counts what issue 5 asks for: messages lost
// (accepted by Postfix, but neither delivered to every member nor bounced
// to the sender), copies duplicated (a member got one message more than
// once), leaks (a token, its prefix or a base64 token file in a
// redistributed copy or in a line of restrictedmail's debug log) and
// panics. Each scenario logs its figures on one line starting with
// RELIABILITY, which `make reliability` collects into the README's table.
type audit struct {
	t        *testing.T
	w        *world
	scenario string
	msgs     []*tracked
	secrets  []string
	logs     []*syncBuffer // of every restrictedmail process the scenario ran
	seq      int
}

// tracked is one submitted message.
type tracked struct {
	id    string // Message-ID, without the brackets
	want  string // "deliver" to every member, or "bounce" (a DSN to the sender)
	res   postfixtest.SubmitResult
	token string
}

func newAudit(t *testing.T, w *world, scenario string) *audit {
	return &audit{t: t, w: w, scenario: scenario, secrets: []string{"RMTOKEN", "Uk1UT0tF"}, logs: []*syncBuffer{w.rm.log}}
}

// issue adds n single-use tokens for board@example.org in one go and
// returns them.
func (a *audit) issue(n int) []string {
	a.t.Helper()
	db, err := a.w.openStore()
	if err != nil {
		a.t.Fatal(err)
	}
	defer db.Close()
	toks := make([]string, n)
	for i := range toks {
		toks[i] = token.Generate()
		rec := token.Record{ID: token.NewID(), Hash: token.HashOf(toks[i]), List: list, Created: time.Now().UTC(), UsesAllowed: 1}
		if err := db.AddToken(context.Background(), rec); err != nil {
			a.t.Fatal(err)
		}
	}
	a.secrets = append(a.secrets, toks...)
	return toks
}

// message builds a message carrying tok in carrier ("part": a base64 token
// file, "header", "subaddress", or "none") and returns its envelope
// recipient.
func (a *audit) message(id, tok, carrier string) (string, []byte) {
	rcpt, extra, file := list, "", ""
	switch carrier {
	case "part":
		file = "--b1\r\nContent-Type: text/plain; name=\"token.txt\"\r\nContent-Disposition: attachment; filename=\"token.txt\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(token.FileContent("RMTOKEN", tok)) + "\r\n"
	case "header":
		extra = "X-Restricted-Token: " + tok + "\r\n"
	case "subaddress":
		rcpt = "board+" + tok + "@example.org"
	}
	msg := "From: Alice <" + author + ">\r\nTo: Example Board <" + rcpt + ">\r\nSubject: " + a.scenario + " " + id + "\r\n" +
		"Message-ID: <" + id + ">\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" + extra +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMinutes of " + id + ".\r\n" + file + "--b1--\r\n"
	return rcpt, []byte(msg)
}

// carrier is the i-th message's carrier: the three in turn.
func carrier(i int) string { return [...]string{"part", "header", "subaddress"}[i%3] }

// submit sends one message with tok in carrier, which should be
// delivered (want "deliver") or bounced ("bounce") once the fault is
// cleared, and returns how Postfix answered.
func (a *audit) submit(tok, carrier, want string) *tracked {
	a.t.Helper()
	a.seq++
	m := &tracked{id: fmt.Sprintf("%s-%d@example.net", a.scenario, a.seq), want: want, token: tok}
	rcpt, msg := a.message(m.id, tok, carrier)
	m.res = a.w.submit(author, []string{rcpt}, msg)
	a.msgs = append(a.msgs, m)
	return m
}

// restart replaces the daemon (after a kill or a stop), keeping its log in
// the audit.
func (a *audit) restart(conf string) {
	a.w.rm = startDaemon(a.t, conf)
	a.logs = append(a.logs, a.w.rm.log)
}

// quiescent reports whether no message is being delivered: each is
// deferred (waiting for a flush) or gone.
func quiescent(q []postfixtest.QueueEntry) bool {
	for _, e := range q {
		if e.QueueName != "deferred" {
			return false
		}
	}
	return true
}

// settle flushes Postfix's queue until it is empty: once the fault is
// cleared every message must be delivered or bounced. A message still
// queued after the deadline fails the test (it would count as lost).
func (a *audit) settle(timeout time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		q := a.w.pf.WaitQueue(a.t, time.Until(deadline), quiescent)
		if len(q) == 0 {
			return
		}
		// Each queued message has one recipient: one "status=" line per
		// attempt. Wait until each was tried again.
		before := strings.Count(a.w.pf.Log(), " status=")
		a.w.pf.Flush(a.t)
		until(a.t, deadline, fmt.Sprintf("Postfix tries the %d deferred messages again", len(q)), func() bool {
			return strings.Count(a.w.pf.Log(), " status=") >= before+len(q)
		})
	}
}

// until polls cond (the state lives in other processes, which cannot
// notify the test) until it holds, or fails t at the deadline.
func until(t *testing.T, deadline time.Time, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		<-tick.C
	}
}

// figures are one scenario's row of the README table.
type figures struct {
	messages, accepted, refused, lost, duplicated, leaked, panics int
}

// count tallies the copies at the relay per message and recipient, and
// the leaks in them.
func (a *audit) count() (copies map[string]map[string]int, leaked int) {
	copies = map[string]map[string]int{}
	for _, m := range a.w.relay.Messages() {
		h, err := mailheader.Read(bufio.NewReader(bytes.NewReader(m.Data)))
		if err != nil {
			a.t.Errorf("a copy at the relay cannot be read: %v", err)
			continue
		}
		id := strings.Trim(strings.TrimSpace(h.Get("Message-Id")), "<>")
		if copies[id] == nil {
			copies[id] = map[string]int{}
		}
		for _, r := range m.Rcpts {
			copies[id][strings.ToLower(r)]++
		}
		leaked += a.leaksIn(m.Data)
	}
	return copies, leaked
}

func (a *audit) leaksIn(b []byte) int {
	n := 0
	lower := bytes.ToLower(b)
	for _, s := range a.secrets {
		if s != "" && bytes.Contains(lower, bytes.ToLower([]byte(s))) {
			n++
		}
	}
	return n
}

// report stops the daemon (a crash at shutdown counts as a panic),
// computes the scenario's figures, logs them and checks them: no loss, no
// leak, no panic, and at most maxDup duplicated copies (0 but for the known
// window of RFC 1047, which the scenarios that hit it say).
func (a *audit) report(maxDup int) figures {
	a.t.Helper()
	a.w.rm.stop()
	var f figures
	copies, leaked := a.count()
	f.leaked = leaked
	dsns := ""
	for _, m := range a.w.sink.Messages() {
		if m.From == "" {
			dsns += string(m.Data)
		}
	}
	members := a.w.members()
	for _, m := range a.msgs {
		f.messages++
		if m.res.Mail != nil || m.res.Data != nil {
			f.refused++ // Postfix did not take it: the client knows
			continue
		}
		f.accepted++
		got := copies[m.id]
		switch m.want {
		case "deliver":
			for _, r := range members {
				switch n := got[strings.ToLower(r)]; {
				case n == 0:
					a.t.Errorf("%s: %s never got a copy", m.id, r)
					f.lost++
				case n > 1:
					f.duplicated += n - 1
				}
			}
		case "bounce":
			if len(got) > 0 {
				a.t.Errorf("%s: should have been refused, but %d members got it", m.id, len(got))
			}
			if !strings.Contains(dsns, m.id) {
				a.t.Errorf("%s: accepted, refused by restrictedmail, and no DSN reached the sender", m.id)
				f.lost++
			}
		}
	}
	for _, l := range a.logs {
		f.leaked += a.leaksIn([]byte(l.String()))
		f.panics += strings.Count(l.String(), "panic")
	}
	if q := a.w.pf.Queue(a.t); len(q) > 0 {
		a.t.Errorf("Postfix still holds %d messages:\n%s", len(q), postfixtest.FormatQueue(q))
	}
	a.t.Logf("RELIABILITY scenario=%s messages=%d accepted=%d refused=%d lost=%d duplicated=%d leaked=%d panics=%d",
		a.scenario, f.messages, f.accepted, f.refused, f.lost, f.duplicated, f.leaked, f.panics)
	if f.lost != 0 || f.leaked != 0 || f.panics != 0 || f.duplicated > maxDup {
		a.t.Errorf("%s: lost %d, duplicated %d (at most %d), leaked %d, panics %d; want none",
			a.scenario, f.lost, f.duplicated, maxDup, f.leaked, f.panics)
	}
	return f
}

// delivered counts the recipients the journal records as delivered,
// read from the store as another process would.
func delivered(t *testing.T, path string) int {
	t.Helper()
	return journalDelivered(t, "sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
}

// journalDelivered counts the recipients the journal of the database
// driver and dsn name records as delivered.
func journalDelivered(t *testing.T, driver, dsn string) int {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM delivery_recipients WHERE state = 1`).Scan(&n); err != nil {
		t.Fatalf("reading the journal: %v", err)
	}
	return n
}

// setKeys sets keys of the tables in a configuration written by the world:
// "table.key" → TOML value, replacing the key if the table has it.
func setKeys(doc string, set map[string]string) string {
	for k, v := range set {
		table, key, _ := strings.Cut(k, ".")
		lines := strings.Split(doc, "\n")
		in, done := false, false
		for i, l := range lines {
			if strings.HasPrefix(l, "[") {
				if in {
					lines = append(lines[:i], append([]string{key + " = " + v}, lines[i:]...)...)
					done = true
					break
				}
				in = l == "["+table+"]"
				continue
			}
			if in && strings.HasPrefix(strings.TrimSpace(l), key+" ") {
				lines[i] = key + " = " + v
				done = true
				break
			}
		}
		if !done {
			if !in {
				lines = append(lines, "["+table+"]")
			}
			lines = append(lines, key+" = "+v)
		}
		doc = strings.Join(lines, "\n")
	}
	return doc
}
