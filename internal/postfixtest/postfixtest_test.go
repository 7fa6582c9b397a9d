package postfixtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// These tests run a real Postfix; they are skipped only with -short, like
// every end-to-end test of the module: Start (through Require) skips them.

const waitTimeout = 30 * time.Second

// captured is one message received by a capture server.
type captured struct {
	From string
	To   []string
	Data []byte
}

// capture is a minimal SMTP (or LMTP) server that hands every message to
// a channel, standing in for the relay host or the LMTP endpoint. It
// refuses recipients nobody@..., to provoke bounces.
type capture struct {
	addr string
	msgs chan captured
}

type captureSession struct {
	c    *capture
	from string
	to   []string
}

func (s *captureSession) Reset()        { s.from, s.to = "", nil }
func (s *captureSession) Logout() error { return nil }
func (s *captureSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *captureSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "nobody@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such list"}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *captureSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.c.msgs <- captured{From: s.from, To: s.to, Data: b}
	return nil
}

// startCapture serves on addr ("127.0.0.1:0" for any port) until t ends.
func startCapture(t *testing.T, addr string, lmtp bool) *capture {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{addr: ln.Addr().String(), msgs: make(chan captured, 100)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &captureSession{c: c}, nil
	}))
	srv.LMTP = lmtp
	srv.Domain = "capture.test"
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = testLogger{t}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

type testLogger struct{ t *testing.T }

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("capture: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"capture:"}, v...)...) }

// relayHost is the capture server's address as a Postfix relayhost.
func (c *capture) relayHost() string {
	host, port, _ := net.SplitHostPort(c.addr)
	return "[" + host + "]:" + port
}

func (c *capture) wait(t *testing.T, inst *Instance) captured {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("no message at %s within %v; queue:\n%s%s", c.addr, waitTimeout, FormatQueue(inst.Queue(t)), inst.logTail(40))
		return captured{}
	}
}

// freePort returns a loopback port on which nothing listens (for now).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func start(t *testing.T, opts Options) *Instance {
	t.Helper()
	begin := time.Now()
	inst := Start(t, opts)
	t.Logf("Start took %v (%s, smtpd %s)", time.Since(begin).Round(time.Millisecond), inst.Dir(), inst.SMTPAddr())
	return inst
}

func message(subject, body string) []byte {
	return []byte("From: Sender <sender@example.net>\r\n" +
		"To: someone@example.org\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Mon, 24 Nov 2025 12:00:00 +0000\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@example.net>\r\n" +
		"\r\n" + body)
}

func mustAccept(t *testing.T, res SubmitResult) {
	t.Helper()
	var rcptErrs []string
	for rcpt, err := range res.Rcpt {
		if err != nil {
			rcptErrs = append(rcptErrs, fmt.Sprintf("%s: %v", rcpt, err))
		}
	}
	if res.Mail != nil || len(rcptErrs) > 0 || res.Data != nil || res.QueueID == "" {
		t.Fatalf("not accepted: mail=%v rcpt=%v data=%v queueID=%q", res.Mail, rcptErrs, res.Data, res.QueueID)
	}
}

// body is what follows the header of a message.
func body(data []byte) []byte {
	_, b, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	return b
}

func TestRelayHostReceivesMessageIntact(t *testing.T) {
	t.Parallel()
	relay := startCapture(t, "127.0.0.1:0", false)
	inst := start(t, Options{RelayHost: relay.relayHost()})

	text := "Hello,\r\n.leading dot survives\r\nUTF-8: Grüße\r\n\r\nlast line\r\n"
	data := message("relay test", text)
	res := Submit(inst.SMTPAddr(), "sender@example.net", []string{"someone@example.org"}, data)
	mustAccept(t, res)

	m := relay.wait(t, inst)
	if m.From != "sender@example.net" || len(m.To) != 1 || m.To[0] != "someone@example.org" {
		t.Errorf("envelope = %s -> %v, want sender@example.net -> [someone@example.org]", m.From, m.To)
	}
	if got := body(m.Data); string(got) != text {
		t.Errorf("body = %q, want %q", got, text)
	}
	if !bytes.Contains(m.Data, []byte("Message-ID: <relay-test@example.net>\r\n")) {
		t.Errorf("original header missing in:\n%s", m.Data)
	}
	inst.WaitQueueEmpty(t, waitTimeout)
	inst.WaitLog(t, waitTimeout, res.QueueID+": removed")
	if !strings.Contains(inst.Log(), "status=sent") {
		t.Errorf("maillog has no status=sent:\n%s", inst.Log())
	}
}

func TestTransportDefersUntilLMTPListensAndFlush(t *testing.T) {
	t.Parallel()
	lmtpPort := freePort(t)
	lmtpAddr := fmt.Sprintf("127.0.0.1:%d", lmtpPort)
	inst := start(t, Options{
		Transport: map[string]string{"board@example.org": "lmtp:inet:" + lmtpAddr},
	})

	text := "for the board\r\n"
	res := Submit(inst.SMTPAddr(), "sender@example.net", []string{"board+tok3n@example.org"}, message("lmtp test", text))
	mustAccept(t, res)

	q := inst.WaitQueue(t, waitTimeout, func(q []QueueEntry) bool {
		return len(q) == 1 && q[0].QueueName == "deferred" && len(q[0].Recipients) == 1 && q[0].Recipients[0].DelayReason != ""
	})
	e := q[0]
	if e.QueueID != res.QueueID || e.Sender != "sender@example.net" || e.Recipients[0].Address != "board+tok3n@example.org" {
		t.Errorf("queue entry = %+v, want %s from sender@example.net to board+tok3n@example.org", e, res.QueueID)
	}
	if reason, want := e.Recipients[0].DelayReason, fmt.Sprintf("127.0.0.1[127.0.0.1]:%d: Connection refused", lmtpPort); !strings.Contains(reason, want) {
		t.Errorf("delay_reason = %q, want it to contain %q", reason, want)
	}
	if e.MessageSize <= 0 || time.Since(e.ArrivalTime) > time.Hour {
		t.Errorf("message_size %d, arrival_time %v: not parsed", e.MessageSize, e.ArrivalTime)
	}
	if pc := inst.Postcat(t, res.QueueID); !strings.Contains(pc, "for the board") || !strings.Contains(pc, "board+tok3n@example.org") {
		t.Errorf("postcat lacks body or recipient:\n%s", pc)
	}

	lmtp := startCapture(t, lmtpAddr, true)
	inst.Flush(t)
	m := lmtp.wait(t, inst)
	if len(m.To) != 1 || m.To[0] != "board+tok3n@example.org" || string(body(m.Data)) != text {
		t.Errorf("LMTP got %v %q, want [board+tok3n@example.org] %q", m.To, body(m.Data), text)
	}
	inst.WaitQueueEmpty(t, waitTimeout)
}

// isReply reports whether err is the SMTP reply code ecode.
func isReply(err error, code int, ecode smtp.EnhancedCode) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code == code && se.EnhancedCode == ecode
}

// assertMilterTempfail checks Postfix's answer when its milter is down and
// milter_default_action is tempfail. smtpd connects to its milters when the
// client connects; Postfix 3.7 then answers the first MAIL FROM.
func assertMilterTempfail(t *testing.T, inst *Instance, res SubmitResult) {
	t.Helper()
	if !isReply(res.Mail, 451, smtp.EnhancedCode{4, 7, 1}) || len(res.Rcpt) != 0 || res.Data != nil || res.QueueID != "" {
		t.Errorf("want MAIL refused with 451 4.7.1 and nothing else; got mail=%v rcpt=%v data=%v queueID=%q", res.Mail, res.Rcpt, res.Data, res.QueueID)
	}
	if q := inst.Queue(t); len(q) != 0 {
		t.Errorf("queue not empty:\n%s", FormatQueue(q))
	}
}

func TestUnreachableMilterTempfails(t *testing.T) {
	t.Parallel()
	inst := start(t, Options{Milter: fmt.Sprintf("inet:127.0.0.1:%d", freePort(t))})
	res := Submit(inst.SMTPAddr(), "sender@example.net", []string{"someone@example.org"}, message("milter test", "x\r\n"))
	assertMilterTempfail(t, inst, res)
	inst.WaitLog(t, waitTimeout, "connect to Milter service inet:127.0.0.1:")
}

func TestReinjectBypassesMilterAndRelays(t *testing.T) {
	t.Parallel()
	relay := startCapture(t, "127.0.0.1:0", false)
	inst := start(t, Options{
		RelayHost: relay.relayHost(),
		Milter:    fmt.Sprintf("inet:127.0.0.1:%d", freePort(t)),
		Reinject:  true,
	})
	if inst.ReinjectAddr() == "" || inst.ReinjectAddr() == inst.SMTPAddr() {
		t.Fatalf("ReinjectAddr() = %q, SMTPAddr() = %q", inst.ReinjectAddr(), inst.SMTPAddr())
	}
	// The public port still consults the (dead) milter ...
	res := Submit(inst.SMTPAddr(), "board-bounces@example.org", []string{"alice@example.net"}, message("public", "x\r\n"))
	assertMilterTempfail(t, inst, res)

	// ... the reinjection port has none (FILTER_README), so a filter's
	// output is not judged again, and it relays to any domain.
	res = Submit(inst.ReinjectAddr(), "board-bounces@example.org", []string{"alice@example.net"}, message("reinjected", "copy\r\n"))
	mustAccept(t, res)
	m := relay.wait(t, inst)
	if m.From != "board-bounces@example.org" || len(m.To) != 1 || m.To[0] != "alice@example.net" || string(body(m.Data)) != "copy\r\n" {
		t.Errorf("relay got %s -> %v %q", m.From, m.To, body(m.Data))
	}
	inst.WaitQueueEmpty(t, waitTimeout)
}

func TestBounceDSNGoesToRelayHost(t *testing.T) {
	t.Parallel()
	// A transport_maps "error:" would make smtpd refuse the recipient up
	// front; a next hop that refuses it after queueing makes a bounce.
	relay := startCapture(t, "127.0.0.1:0", false)
	inst := start(t, Options{RelayHost: relay.relayHost()})
	res := Submit(inst.SMTPAddr(), "sender@example.net", []string{"nobody@example.org"}, message("bounce test", "x\r\n"))
	mustAccept(t, res)
	dsn := relay.wait(t, inst)
	if dsn.From != "" || len(dsn.To) != 1 || dsn.To[0] != "sender@example.net" {
		t.Errorf("DSN envelope %q -> %v, want <> -> [sender@example.net]", dsn.From, dsn.To)
	}
	if !bytes.Contains(dsn.Data, []byte("Status: 5.1.1")) || !bytes.Contains(dsn.Data, []byte("no such list")) {
		t.Errorf("DSN lacks status or reason:\n%s", dsn.Data)
	}
	inst.WaitQueueEmpty(t, waitTimeout)
}

func TestInstancesRunInParallel(t *testing.T) {
	t.Parallel()
	type pair struct {
		inst  *Instance
		relay *capture
	}
	var ps []pair
	for range 2 {
		relay := startCapture(t, "127.0.0.1:0", false)
		ps = append(ps, pair{start(t, Options{RelayHost: relay.relayHost()}), relay})
	}
	if ps[0].inst.Dir() == ps[1].inst.Dir() || ps[0].inst.SMTPAddr() == ps[1].inst.SMTPAddr() {
		t.Fatalf("instances share %s / %s", ps[0].inst.Dir(), ps[0].inst.SMTPAddr())
	}
	results := make(chan SubmitResult, len(ps))
	for n, p := range ps {
		go func() {
			results <- Submit(p.inst.SMTPAddr(), "sender@example.net", []string{"someone@example.org"},
				message(fmt.Sprintf("instance %d", n), fmt.Sprintf("to instance %d\r\n", n)))
		}()
	}
	for range ps {
		mustAccept(t, <-results)
	}
	for n, p := range ps {
		m := p.relay.wait(t, p.inst)
		if want := fmt.Sprintf("to instance %d\r\n", n); string(body(m.Data)) != want {
			t.Errorf("instance %d relayed %q, want %q", n, body(m.Data), want)
		}
		if !strings.Contains(p.inst.Log(), p.inst.Dir()) {
			t.Errorf("instance %d logs elsewhere", n)
		}
	}
}

func TestCleanupStopsPostfix(t *testing.T) {
	t.Parallel()
	Require(t) // with -short, skip here, not pass with a skipped subtest
	var inst *Instance
	t.Run("instance", func(t *testing.T) {
		inst = start(t, Options{})
		if !inst.running() {
			t.Fatal("master not running after Start")
		}
	})
	if inst == nil {
		return
	}
	if live := groupMembers(inst.masterPID); len(live) != 0 {
		t.Errorf("Postfix processes %v still running after cleanup", live)
	}
	if _, err := os.Stat(inst.Dir()); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", inst.Dir(), err)
	}
}

// TestWatchdogStopsOrphanedPostfix simulates a test binary that dies
// without cleanups: the watchdog's pipe closes without "done".
func TestWatchdogStopsOrphanedPostfix(t *testing.T) {
	t.Parallel()
	inst := start(t, Options{})
	inst.stopOnce.Do(func() {}) // the watchdog cleans up instead
	inst.watchdog.w.Close()
	if err := inst.watchdog.cmd.Wait(); err != nil {
		t.Fatalf("watchdog: %v", err)
	}
	if live := groupMembers(inst.masterPID); len(live) != 0 {
		t.Errorf("Postfix processes %v still running after the watchdog", live)
	}
	if _, err := os.Stat(inst.Dir()); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", inst.Dir(), err)
	}
}

// TestLayoutMatchesPostfixCheck: Start lays out the queue itself instead of
// running "postfix check"; that command must find nothing to create,
// change or warn about.
func TestLayoutMatchesPostfixCheck(t *testing.T) {
	t.Parallel()
	inst := start(t, Options{MainCF: map[string]string{"message_size_limit": "20480000"}})
	before := snapshot(t, inst.Dir())
	out, err := inst.run(inst.bin.postfix, "-c", inst.l.configDir, "check")
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("postfix check: %v\n%s", err, out)
	}
	if after := snapshot(t, inst.Dir()); after != before {
		t.Errorf("postfix check changed the layout:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	main, err := os.ReadFile(inst.l.configDir + "/main.cf")
	if err != nil || !strings.Contains(string(main), "\nmessage_size_limit = 20480000\n") {
		t.Errorf("MainCF not in main.cf (%v):\n%s", err, main)
	}

	// Everything the instance writes is under its directory.
	out, err = inst.run(inst.bin.postconf, "-c", inst.l.configDir, "-h",
		"config_directory", "queue_directory", "data_directory", "maillog_file")
	if err != nil {
		t.Fatalf("postconf: %v: %s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if !strings.HasPrefix(p, inst.Dir()+"/") {
			t.Errorf("%s is outside %s", p, inst.Dir())
		}
	}
	for _, f := range []string{"spool/pid/master.pid", "data/master.lock", "maillog"} {
		if _, err := os.Stat(filepath.Join(inst.Dir(), f)); err != nil {
			t.Error(err)
		}
	}
}

// snapshot lists the directories under root with owner, group and mode.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %d:%d %v\n", strings.TrimPrefix(path, root), st.Uid, st.Gid, info.Mode())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// fakeT records a Fatalf instead of ending the real test, to check how
// Start fails.
type fakeT struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	cleanups []func()
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Failed() bool      { return f.fatal != "" }

// runFake runs fn like a test body and then its cleanups, newest first.
func runFake(t *testing.T, fn func(testing.TB)) string {
	f := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f.fatal
}

func TestStartFailsOnUnknownMainCFParameter(t *testing.T) {
	t.Parallel()
	Require(t) // skip before runFake: its goroutine must not skip the real t
	var dir string
	msg := runFake(t, func(tb testing.TB) {
		inst := Start(tb, Options{MainCF: map[string]string{"smtpd_miltrs": "inet:127.0.0.1:1"}})
		dir = inst.Dir()
	})
	if !strings.Contains(msg, "unused parameter: smtpd_miltrs=inet:127.0.0.1:1") {
		t.Errorf("Start failed with %q, want Postfix's unused parameter warning", msg)
	}
	if dir != "" {
		t.Errorf("Start returned an instance in %s", dir)
	}
}

func TestStartFailsWithPostfixError(t *testing.T) {
	t.Parallel()
	Require(t) // skip before runFake: its goroutine must not skip the real t
	// The master refuses to start without a local inet_interfaces address.
	msg := runFake(t, func(tb testing.TB) {
		Start(tb, Options{MainCF: map[string]string{"inet_interfaces": "192.0.2.1"}})
	})
	t.Logf("Start failed with:\n%s", msg)
	if !strings.Contains(msg, "postfix start") {
		t.Errorf("Start failed with %q, want the postfix start failure", msg)
	}
}

// BenchmarkStart measures Start and the cleanup's stop, one instance at a
// time.
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		inst := Start(b, Options{})
		inst.stop(b)
	}
}

// BenchmarkStop measures the cleanup's stop alone.
func BenchmarkStop(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		inst := Start(b, Options{})
		b.StartTimer()
		inst.stop(b)
	}
}

// Without a relay host nothing leaves for the outside world: smtpd refuses
// such recipients with the retry transport's reason.
func TestNoRelayHostRefusesOtherRecipients(t *testing.T) {
	t.Parallel()
	inst := start(t, Options{})
	res := Submit(inst.SMTPAddr(), "sender@example.net", []string{"someone@example.org", "alice@example.net"}, message("no relay", "x\r\n"))
	for rcpt, err := range res.Rcpt {
		if !isReply(err, 450, smtp.EnhancedCode{4, 3, 5}) || !strings.Contains(err.Error(), "Options.RelayHost is not set") {
			t.Errorf("RCPT %s: %v, want 450 4.3.5 ...Options.RelayHost is not set", rcpt, err)
		}
	}
	if res.QueueID != "" || len(res.Rcpt) != 2 {
		t.Errorf("result %+v", res)
	}
}
