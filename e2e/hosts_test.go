package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/store"
)

// Several MX hosts on one store: two restrictedmail daemons, each with its
// own private Postfix (its MX), its own spool and its own capture relay,
// sharing one store. A token issued once is good on both; a token is spent
// once across both; a message reaches each member once whichever host, or
// both, it arrived through.
//
// The store is a parameter (storeFor): two daemons on one SQLite file are
// two processes with real locks between them, a faithful stand-in for two
// hosts on one database; a PostgreSQL variant passes its own storeFor.

// sharedStore is the store all hosts of a test use.
type sharedStore struct {
	name string // "" for SQLite; otherwise the scenarios' suffix
	toml string // the [store] table's keys
	// delivered counts the recipients the journal records as delivered,
	// read as another process would.
	delivered func(t *testing.T) int
	// outage makes the store unavailable to every host beyond the
	// daemons' patience (SQLite: another process holds the write lock
	// beyond the busy timeout) and returns the end of it.
	outage func(t *testing.T) (end func())
}

// storeFor makes a test's shared store; it is called once per test.
type storeFor func(t *testing.T) sharedStore

// sharedSQLite is one SQLite file for every host.
func sharedSQLite(t *testing.T) sharedStore {
	path := filepath.Join(t.TempDir(), "state.db")
	return sharedStore{
		toml:      fmt.Sprintf("path = %q", path),
		delivered: func(t *testing.T) int { return delivered(t, path) },
		outage: func(t *testing.T) func() {
			release, err := lockStore(path)
			if err != nil {
				t.Errorf("no outage: %v", err)
				return func() {}
			}
			return release
		},
	}
}

// mx is two hosts and the messages submitted to them.
type mx struct {
	t        *testing.T
	store    sharedStore
	hosts    []*world
	logs     []*syncBuffer
	scenario string
	secrets  []string

	mu   sync.Mutex
	msgs []*mxMsg
}

// mxMsg is one submission: a message (by Message-ID) to one host. The
// same message may be submitted to both.
type mxMsg struct {
	id   string
	host int
	res  postfixtest.SubmitResult
}

// twoHosts starts two hosts on one store made by store; o shapes both.
func twoHosts(t *testing.T, store storeFor, scenario string, o worldOpts) *mx {
	t.Helper()
	m := &mx{t: t, store: store(t), scenario: scenario, secrets: []string{"RMTOKEN", "Uk1UT0tF"}}
	if m.store.name != "" {
		m.scenario += "-" + m.store.name
	}
	for range 2 {
		oi := o
		oi.store = m.store.toml
		oi.set = maps.Clone(o.set)
		if oi.set == nil {
			oi.set = map[string]string{}
		}
		// The spool is per host: a daemon starting cleans its spool
		// directory, which by default is beside the (shared) store.
		oi.set["lmtp.spool_dir"] = strconv.Quote(t.TempDir())
		w := newWorld(t, oi)
		m.hosts = append(m.hosts, w)
		m.logs = append(m.logs, w.rm.log)
	}
	return m
}

// issue issues a token with uses on host 0, as an administrator would.
func (m *mx) issue(uses int) string {
	m.t.Helper()
	tok, _ := m.hosts[0].issueCLI("--uses", strconv.Itoa(uses))
	m.secrets = append(m.secrets, tok)
	return tok
}

// message is the message id with tok in its token header.
func (m *mx) message(id, tok string) []byte {
	return []byte("From: Alice <" + author + ">\r\nTo: Example Board <" + list + ">\r\nSubject: " + m.scenario + " " + id + "\r\n" +
		"Message-ID: <" + id + ">\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nX-Restricted-Token: " + tok + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello board, from " + id + ".\r\n")
}

// submit hands message id (token tok) to host's Postfix; safe for
// concurrent use.
func (m *mx) submit(host int, id, tok string) *mxMsg {
	s := &mxMsg{id: id, host: host}
	s.res = postfixtest.Submit(m.hosts[host].pf.SMTPAddr(), author, []string{list}, m.message(id, tok))
	m.mu.Lock()
	m.msgs = append(m.msgs, s)
	m.mu.Unlock()
	return s
}

// settle flushes host's Postfix until its queue is empty (audit.settle).
func (m *mx) settle(host int) {
	m.t.Helper()
	(&audit{t: m.t, w: m.hosts[host]}).settle(settleTime)
}

// copies tallies the copies at every host's relay by Message-ID and
// recipient, and the leaks in them.
func (m *mx) copies() (map[string]map[string]int, int) {
	copies, leaked := map[string]map[string]int{}, 0
	a := &audit{t: m.t, secrets: m.secrets}
	for _, w := range m.hosts {
		for _, c := range w.relay.Messages() {
			h, err := mailheader.Read(bufio.NewReader(bytes.NewReader(c.Data)))
			if err != nil {
				m.t.Errorf("a copy at the relay cannot be read: %v", err)
				continue
			}
			id := strings.Trim(strings.TrimSpace(h.Get("Message-Id")), "<>")
			if copies[id] == nil {
				copies[id] = map[string]int{}
			}
			for _, r := range c.Rcpts {
				copies[id][strings.ToLower(r)]++
			}
			leaked += a.leaksIn(c.Data)
		}
	}
	return copies, leaked
}

// report stops both daemons and checks the scenario: exactly distributed
// of the messages reached the members, each member once; every other
// message was refused at SMTP time or came back to the sender as a DSN;
// nothing leaked, nothing panicked, both queues are empty. It logs the
// README's RELIABILITY line; duplicates beyond maxDup fail the test.
func (m *mx) report(distributed, maxDup int) figures {
	m.t.Helper()
	for _, w := range m.hosts {
		w.rm.stop()
	}
	copies, leaked := m.copies()
	f := figures{leaked: leaked}
	dsns := ""
	for _, w := range m.hosts {
		for _, c := range w.sink.Messages() {
			if c.From == "" {
				dsns += string(c.Data)
			}
		}
	}
	members := m.hosts[0].members()
	accepted := map[string]bool{}
	for _, s := range m.msgs {
		f.messages++
		if s.res.Mail != nil || s.res.Data != nil {
			f.refused++
			continue
		}
		f.accepted++
		accepted[s.id] = true
	}
	reached := 0
	for id := range accepted {
		got := copies[id]
		if len(got) == 0 {
			if !strings.Contains(dsns, id) {
				m.t.Errorf("%s: accepted, never distributed, and no DSN reached the sender", id)
				f.lost++
			}
			continue
		}
		reached++
		for _, r := range members {
			switch n := got[strings.ToLower(r)]; {
			case n == 0:
				m.t.Errorf("%s: %s never got a copy", id, r)
				f.lost++
			case n > 1:
				f.duplicated += n - 1
			}
		}
	}
	if reached != distributed {
		m.t.Errorf("%d messages reached the members, want %d", reached, distributed)
	}
	for _, l := range m.logs {
		f.leaked += (&audit{secrets: m.secrets}).leaksIn([]byte(l.String()))
		f.panics += strings.Count(l.String(), "panic")
	}
	for i, w := range m.hosts {
		if q := w.pf.Queue(m.t); len(q) > 0 {
			m.t.Errorf("host %d's Postfix still holds %d messages:\n%s", i, len(q), postfixtest.FormatQueue(q))
		}
	}
	m.t.Logf("RELIABILITY scenario=%s messages=%d accepted=%d refused=%d lost=%d duplicated=%d leaked=%d panics=%d",
		m.scenario, f.messages, f.accepted, f.refused, f.lost, f.duplicated, f.leaked, f.panics)
	if f.lost != 0 || f.leaked != 0 || f.panics != 0 || f.duplicated > maxDup {
		m.t.Errorf("%s: lost %d, duplicated %d (at most %d), leaked %d, panics %d; want none",
			m.scenario, f.lost, f.duplicated, maxDup, f.leaked, f.panics)
	}
	return f
}

// concurrently submits n different messages with tok at once, spread
// over both hosts.
func (m *mx) concurrently(n int, tok string) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { m.submit(i%2, fmt.Sprintf("%s-%d@example.net", m.scenario, i), tok) })
	}
	wg.Wait()
}

func TestTwoHostsTokenGoodOnBoth(t *testing.T) {
	t.Parallel()
	testTokenGoodOnBoth(t, sharedSQLite)
}

// testTokenGoodOnBoth: a two-use token issued once is accepted on both
// hosts, one message through each; a third message through either is
// refused at SMTP time (used up across both).
func testTokenGoodOnBoth(t *testing.T, store storeFor) {
	m := twoHosts(t, store, "two-hosts-token-on-both", worldOpts{milter: true})
	tok := m.issue(2)
	for host := range 2 {
		if s := m.submit(host, fmt.Sprintf("on-host-%d@example.net", host), tok); s.res.Data != nil {
			t.Fatalf("host %d refused a valid token: %v", host, s.res.Data)
		}
		m.settle(host)
	}
	if s := m.submit(1, "third@example.net", tok); s.res.Data == nil || !strings.Contains(s.res.Data.Error(), "already used") {
		t.Errorf("a third message with a two-use token: %v, want 550 already used", s.res.Data)
	}
	m.report(2, 0)
}

func TestTwoHostsSingleUseTenTimes(t *testing.T) {
	t.Parallel()
	testUsesAcrossHosts(t, sharedSQLite, 1)
}

func TestTwoHostsThreeUsesTenTimes(t *testing.T) {
	t.Parallel()
	testUsesAcrossHosts(t, sharedSQLite, 3)
}

// testUsesAcrossHosts: ten different messages with one token of uses
// uses, sent at once, five through each host: exactly uses of them are
// distributed, each member one copy of each; the others are refused at
// SMTP time or bounced.
func testUsesAcrossHosts(t *testing.T, store storeFor, uses int) {
	m := twoHosts(t, store, fmt.Sprintf("two-hosts-%d-uses-10-messages", uses), worldOpts{milter: true})
	tok := m.issue(uses)
	m.concurrently(10, tok)
	m.settle(0)
	m.settle(1)
	m.report(uses, 0)
}

func TestTwoHostsSameMessageThroughBoth(t *testing.T) {
	t.Parallel()
	testSameMessageThroughBoth(t, sharedSQLite)
}

// testSameMessageThroughBoth: one message (one Message-ID) with a
// single-use token through both MX hosts at once, then once more through
// the second (an upstream retrying after a lost 250): every submission is
// accepted — no refusal, no DSN to the sender — and each member gets one
// copy.
func testSameMessageThroughBoth(t *testing.T, store storeFor) {
	m := twoHosts(t, store, "two-hosts-same-message", worldOpts{milter: true})
	tok := m.issue(1)
	id := "same-message@example.net"
	var wg sync.WaitGroup
	for host := range 2 {
		wg.Go(func() { m.submit(host, id, tok) })
	}
	wg.Wait()
	m.settle(0)
	m.settle(1)
	m.submit(1, id, tok)
	m.settle(1)
	for _, s := range m.msgs {
		if s.res.Mail != nil || s.res.Data != nil {
			t.Errorf("host %d refused the message: %v %v", s.host, s.res.Mail, s.res.Data)
		}
	}
	if f := m.report(1, 0); f.refused != 0 {
		t.Errorf("%d submissions refused", f.refused)
	}
	for i, w := range m.hosts {
		for _, c := range w.sink.Messages() {
			if c.From == "" {
				t.Errorf("host %d sent a DSN for a message that was distributed:\n%s", i, c.Data)
			}
		}
	}
}

func TestFaultTwoHostsKill9MidFanOut(t *testing.T) {
	t.Parallel()
	if f := testKill9HandOver(t, sharedSQLite, false); f.duplicated != 0 {
		t.Errorf("%d duplicates: the host taking over resent what the journal had recorded", f.duplicated)
	}
}

// TestFaultTwoHostsKill9InTheWindow: as TestFaultTwoHostsKill9MidFanOut,
// but the relay accepts the transaction it held when host A died: its 250
// never reached the journal (the known window), so host B sends that
// transaction's ten members their copy again. Ten duplicates, no loss.
func TestFaultTwoHostsKill9InTheWindow(t *testing.T) {
	t.Parallel()
	if f := testKill9HandOver(t, sharedSQLite, true); f.duplicated != 10 {
		t.Errorf("%d duplicates; the window predicts the one transaction in flight (10)", f.duplicated)
	}
}

// testKill9HandOver: host A is killed with SIGKILL in the middle of a
// fan-out to 30 members (10 per relay transaction, the relay holding the
// second transaction, which it then loses), leaving its lease behind.
// The upstream hands the same message to host B, which answers 451 while
// the lease is live, takes the delivery over once it has expired and
// sends to the 20 pending members only. A restarted, its Postfix hands the
// message over again: 250, nothing sent. Every member gets one copy.
// accept makes the relay take the transaction it held instead (the known
// window).
func testKill9HandOver(t *testing.T, store storeFor, accept bool) figures {
	const lease = 4 * time.Second
	scenario := "two-hosts-kill-9-mid-fan-out-hand-over"
	if accept {
		scenario = "two-hosts-kill-9-in-the-window-hand-over"
	}
	m := twoHosts(t, store, scenario, worldOpts{
		milter: true, membersFile: 30, maxRecipients: 10, connections: 1,
		set: map[string]string{"lmtp.lease": strconv.Quote(lease.String())},
	})
	a, b := m.hosts[0], m.hosts[1]
	tok := m.issue(1)
	id := "handed-over@example.net"
	held, release := make(chan struct{}), make(chan error, 1)
	t.Cleanup(func() {
		select {
		case release <- fmt.Errorf("test over"):
		default:
		}
	})
	var n int
	var mu sync.Mutex
	a.relay.SetDataHook(func(testsmtp.Message) error {
		mu.Lock()
		n++
		second := n == 2
		mu.Unlock()
		if !second {
			return nil
		}
		close(held)
		return <-release
	})
	if s := m.submit(0, id, tok); s.res.Data != nil {
		t.Fatalf("host A refused the message: %v", s.res.Data)
	}
	select {
	case <-held:
	case <-time.After(waitMail):
		t.Fatal("host A's fan-out never reached its second transaction")
	}
	until(t, time.Now().Add(waitMail), "the journal records the first transaction", func() bool {
		return m.store.delivered(t) == 10
	})
	(&audit{t: t, w: a}).kill9()
	if accept {
		release <- nil
		a.relay.WaitRecipients(t, 20, waitMail)
	} else {
		release <- fmt.Errorf("the relay crashed too")
	}
	a.relay.SetDataHook(nil)

	if s := m.submit(1, id, tok); s.res.Data != nil {
		t.Fatalf("host B refused the message handed over: %v", s.res.Data)
	}
	m.settle(1)
	if lines := b.rm.log.lines("another host distributes it"); len(lines) == 0 {
		t.Errorf("host B never waited for host A's lease (no 451): it took over a live delivery, or the lease had expired already")
	}
	if lines := b.rm.log.lines("msg=\"delivery of a duplicate\"", "result=250", "recipients=20"); len(lines) != 1 {
		t.Errorf("host B's take-over: %d log lines of a duplicate sent to the 20 pending members, want 1", len(lines))
	}
	a.rm = startDaemon(t, a.conf)
	m.logs = append(m.logs, a.rm.log)
	m.settle(0)
	if got := m.store.delivered(t); got != 30 {
		t.Errorf("the journal records %d delivered, want 30", got)
	}
	maxDup := 0
	if accept {
		maxDup = 10
	}
	return m.report(1, maxDup)
}

func TestFaultTwoHostsStoreLockedDuringFanOut(t *testing.T) {
	t.Parallel()
	testStoreOutageDuringFanOut(t, sharedSQLite)
}

// testStoreOutageDuringFanOut: the store becomes unavailable while host A
// fans a message out to 30 members (at its second relay transaction), for
// longer than the daemons wait for it, and the upstream hands the same
// message to host B meanwhile. A records what the relay took once the
// store is back and completes; B answers 4xx until then, and 250 without
// sending after. Nobody gets two copies, nobody none.
func testStoreOutageDuringFanOut(t *testing.T, st storeFor) {
	m := twoHosts(t, st, "two-hosts-store-unavailable-during-fan-out", worldOpts{milter: true, membersFile: 30, maxRecipients: 10, connections: 1})
	a := m.hosts[0]
	tok := m.issue(1)
	id := "store-out@example.net"
	var (
		mu     sync.Mutex
		n      int
		outage = make(chan struct{})
	)
	a.relay.SetDataHook(func(testsmtp.Message) error {
		mu.Lock()
		n++
		second := n == 2
		mu.Unlock()
		if second {
			end := m.store.outage(t)
			// The fault lasts beyond the busy timeout; it is not a wait.
			time.AfterFunc(store.DefaultBusyTimeout+3*time.Second, end)
			close(outage)
		}
		return nil
	})
	if s := m.submit(0, id, tok); s.res.Data != nil {
		t.Fatalf("host A refused the message: %v", s.res.Data)
	}
	select {
	case <-outage:
	case <-time.After(waitMail):
		t.Fatal("the store never became unavailable")
	}
	m.submit(1, id, tok) // the upstream retrying through the other MX
	a.relay.WaitRecipients(t, 30, waitMail)
	m.settle(0)
	m.settle(1)
	m.report(1, 0)
}
