package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

func TestRelayRefusingConnections(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	cfg := relayConfig(srv)
	cfg.MaxRecipients = 10
	c := newClient(t, cfg)
	rcpts := addresses(1000, "r%d@example.net")

	srv.Refuse()
	res := send(t, t.Context(), c, rcpts, message)
	for _, r := range rcpts {
		wantErr(t, res, r, StageConnect, true, 0)
	}
	if len(res.calls) != 100 {
		t.Errorf("%d report calls, want one per transaction (100)", len(res.calls))
	}

	srv.Resume() // the relay is back, on the same address
	res = send(t, t.Context(), c, rcpts, message)
	for _, r := range rcpts {
		wantErr(t, res, r, "", false, 0)
	}
}

func TestRelayRefusingServiceTripsBreaker(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.SetConnectHook(func(int) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "service not available"}
	})
	cfg := relayConfig(srv)
	cfg.MaxRecipients = 10
	rcpts := addresses(1000, "r%d@example.net")
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for _, r := range rcpts {
		wantErr(t, res, r, StageHelo, true, 421)
	}
	if n := srv.Connections(); n != 1 {
		t.Fatalf("%d connection attempts for a relay that refuses service, want 1", n)
	}
}

func TestExtraConnectionsRefused(t *testing.T) {
	// A relay limiting parallel connections: the workers it turns away
	// leave their batches to the one it serves; the breaker stays closed.
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.SetConnectHook(func(n int) *smtp.SMTPError {
		if n > 1 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many connections"}
		}
		return nil
	})
	cfg := relayConfig(srv)
	cfg.MaxRecipients = 10
	rcpts := addresses(200, "r%d@example.net")
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for _, r := range rcpts {
		wantErr(t, res, r, "", false, 0)
	}
	if n := srv.Connections(); n > 4 {
		t.Fatalf("%d connections, want at most 4 (one served, the others turned away once each)", n)
	}
}

// checkDelivered asserts that the server holds exactly the recipients
// reported delivered, each once.
func checkDelivered(t *testing.T, srv *testsmtp.Server, res sendResult) (delivered int) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range srv.Recipients() {
		seen[r]++
	}
	for rcpt, e := range res.byRcpt {
		switch {
		case e == nil && seen[rcpt] != 1:
			t.Errorf("%s reported delivered, at the server %d times", rcpt, seen[rcpt])
		case e != nil && seen[rcpt] != 0:
			t.Errorf("%s reported failed (%v), at the server %d times", rcpt, e, seen[rcpt])
		case e == nil:
			delivered++
		}
	}
	return delivered
}

func TestConnectionDroppedMidTransaction(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.DropAfter(3)
	cfg := relayConfig(srv)
	cfg.MaxRecipients, cfg.Connections = 10, 1
	rcpts := addresses(100, "r%02d@example.net")
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for i, r := range rcpts {
		if i/10 == 3 {
			wantErr(t, res, r, StageData, true, 0) // the dropped transaction
		} else {
			wantErr(t, res, r, "", false, 0) // before it, and after reconnecting
		}
	}
	checkDelivered(t, srv, res)
	if n := srv.Connections(); n != 2 {
		t.Fatalf("%d connections, want 2: one drop must not trip the breaker", n)
	}
}

func TestConnectionDroppedParallel(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.DropAfter(5)
	cfg := relayConfig(srv)
	cfg.MaxRecipients = 10
	res := send(t, t.Context(), newClient(t, cfg), addresses(400, "r%03d@example.net"), message)
	if n := checkDelivered(t, srv, res); n != 390 {
		t.Fatalf("%d delivered, want 390 (one transaction of 10 dropped)", n)
	}
}

func TestReconnectRefusedLeavesWorkToOthers(t *testing.T) {
	// One of two workers loses its connection and cannot get another: the
	// other worker delivers everything else. Whichever worker it is (the
	// one that probed or not), the breaker must stay closed; the rounds
	// make both cases likely.
	for round := range 10 {
		srv := testsmtp.Start(t, testsmtp.Options{})
		srv.SetConnectHook(func(n int) *smtp.SMTPError {
			if n > 2 {
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many connections"}
			}
			return nil
		})
		srv.DropAfter(round % 3)
		cfg := relayConfig(srv)
		cfg.MaxRecipients, cfg.Connections = 10, 2
		res := send(t, t.Context(), newClient(t, cfg), addresses(200, "r%03d@example.net"), message)
		if n := checkDelivered(t, srv, res); n != 190 {
			t.Fatalf("round %d: %d delivered, want 190 (one transaction of 10 dropped)", round, n)
		}
	}
}

func TestIdleWorkerStaysForBatchPutBack(t *testing.T) {
	// The interleaving behind the breaker that TestExtraConnectionsRefused
	// and TestReconnectRefusedLeavesWorkToOthers saw open now and then: the
	// worker with a connection finds the queue empty while the other one
	// still holds a batch and then cannot connect. The idle worker must
	// still be there to take the batch back; had it stopped, the other
	// would count itself the last worker and fail the batch at once. The
	// relay holds back its answer to the second connection until worker 0
	// has delivered everything else and found the queue empty; and worker
	// 0's first MAIL waits for the second connection, so that worker 1 has
	// taken a batch before worker 0 can deliver them all.
	srv := testsmtp.Start(t, testsmtp.Options{})
	second, idle := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv.SetConnectHook(func(n int) *smtp.SMTPError {
		if n == 1 {
			return nil // the probe, worker 0's
		}
		if n == 2 {
			close(second)
			select {
			case <-idle:
			case <-time.After(10 * time.Second):
			}
		}
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many connections"}
	})
	srv.SetMailHook(func(string) *smtp.SMTPError {
		select {
		case <-second:
		case <-time.After(10 * time.Second):
		}
		return nil
	})
	cfg := relayConfig(srv)
	cfg.MaxRecipients, cfg.Connections = 10, 2
	c := newClient(t, cfg)
	c.onIdle = func() { once.Do(func() { close(idle) }) }
	rcpts := addresses(200, "r%03d@example.net")
	res := send(t, t.Context(), c, rcpts, message)
	for _, r := range rcpts {
		wantErr(t, res, r, "", false, 0)
	}
	if n := checkDelivered(t, srv, res); n != 200 {
		t.Errorf("%d delivered, want 200", n)
	}
	select {
	case <-idle:
	default:
		t.Error("no worker was ever idle while another held a batch: the interleaving was not forced")
	}
	if n := srv.Connections(); n != 2 {
		t.Errorf("%d connections, want 2 (one served, one turned away)", n)
	}
}

func TestStaleConnectionReplayed(t *testing.T) {
	// A relay that ends a used connection with 421 at MAIL: nothing of the
	// transaction was sent, so it goes again on a new connection.
	srv := testsmtp.Start(t, testsmtp.Options{})
	var mails atomic.Int32
	srv.SetMailHook(func(string) *smtp.SMTPError {
		if mails.Add(1) == 3 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many messages, closing"}
		}
		return nil
	})
	cfg := relayConfig(srv)
	cfg.MaxRecipients, cfg.Connections = 1, 1
	rcpts := addresses(4, "r%d@example.net")
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for _, r := range rcpts {
		wantErr(t, res, r, "", false, 0)
	}
	checkDelivered(t, srv, res)
	if n := srv.Connections(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestRcpt421EndsTransaction(t *testing.T) {
	// 421 means the relay closes the connection (RFC 5321 section 3.8):
	// the recipients not yet final fail temporarily, and the next batch
	// goes over a new connection.
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		if rcpt == "r2@example.net" {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "shutting down"}
		}
		return nil
	})
	cfg := relayConfig(srv)
	cfg.MaxRecipients, cfg.Connections = 5, 1
	rcpts := addresses(10, "r%d@example.net")
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for i, r := range rcpts {
		if i < 5 {
			wantErr(t, res, r, StageRcpt, true, 421)
		} else {
			wantErr(t, res, r, "", false, 0)
		}
	}
	checkDelivered(t, srv, res)
	if n := srv.Connections(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestStallingRelayTimesOutAndTripsBreaker(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.DelayData(time.Hour)
	cfg := relayConfig(srv)
	cfg.MaxRecipients, cfg.Connections = 1, 2
	cfg.CommandTimeout = 200 * time.Millisecond
	rcpts := addresses(40, "r%d@example.net")
	res := send(t, t.Context(), newClient(t, cfg), rcpts, message)
	for _, r := range rcpts {
		if e := res.byRcpt[r]; e == nil || !e.Temporary || e.Stage != StageData || !strings.HasPrefix(e.Message, "timeout") {
			t.Fatalf("%s: %v, want a temporary timeout at DATA", r, e)
		}
	}
	// Each worker gives up after maxLostInARow timeouts on as many
	// connections; then the breaker fails the rest without trying.
	if want := 2 * maxLostInARow; srv.Connections() != want {
		t.Fatalf("%d connections, want %d", srv.Connections(), want)
	}
}

func TestSilentRelayTimesOut(t *testing.T) {
	// A relay that accepts the connection and then says nothing: no
	// greeting, no TLS handshake.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for mode, stage := range map[string]string{"none": StageHelo, "starttls": StageTLS, "tls": StageTLS} {
		cfg := Options{Address: ln.Addr().String(), TLS: mode, CommandTimeout: 200 * time.Millisecond}
		res := send(t, t.Context(), newClient(t, cfg), []string{"a@example.net"}, message)
		if e := res.byRcpt["a@example.net"]; e == nil || e.Stage != stage || !e.Temporary || !strings.Contains(e.Message, "timeout") {
			t.Errorf("tls %s: %v, want a temporary %s timeout", mode, e, stage)
		}
	}
}

func TestStalledTransferTimesOut(t *testing.T) {
	// A relay that stops reading: the message outgrows the socket buffers
	// and the write itself must time out.
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.DelayData(time.Hour)
	cfg := relayConfig(srv)
	cfg.CommandTimeout = 300 * time.Millisecond
	big := message + strings.Repeat(strings.Repeat("y", 998)+"\r\n", 32<<10) // 32 MB
	res := send(t, t.Context(), newClient(t, cfg), []string{"a@example.net"}, big)
	if e := res.byRcpt["a@example.net"]; e == nil || e.Stage != StageData || !strings.Contains(e.Message, "write") ||
		!strings.HasPrefix(e.Message, "timeout") {
		t.Fatalf("result %v, want a write timeout at DATA", e)
	}
}

func TestContextCancelledMidSend(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.DelayData(time.Hour)
	started := make(chan struct{})
	var once sync.Once
	srv.SetRcptHook(func(string) *smtp.SMTPError {
		once.Do(func() { close(started) })
		return nil
	})
	cfg := relayConfig(srv)
	cfg.MaxRecipients = 10
	rcpts := addresses(500, "r%d@example.net")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan sendResult)
	go func() { done <- send(t, ctx, newClient(t, cfg), rcpts, message) }()
	<-started
	cancel()
	select {
	case res := <-done:
		for _, r := range rcpts {
			if e := res.byRcpt[r]; e == nil || !e.Temporary || !strings.HasPrefix(e.Message, "cancelled") {
				t.Fatalf("%s: %v, want a temporary cancellation", r, e)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Send did not return after cancellation")
	}
	if len(srv.Messages()) != 0 {
		t.Fatal("messages delivered although every DATA stalls")
	}
}

func TestContextCancelledBeforeSend(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rcpts := addresses(200, "r%d@example.net")
	res := send(t, ctx, newClient(t, relayConfig(srv)), rcpts, message)
	for _, r := range rcpts {
		wantErr(t, res, r, StageConnect, true, 0)
	}
	if n := srv.Connections(); n != 0 {
		t.Fatalf("%d connections after cancellation", n)
	}
}

func TestMessageReadError(t *testing.T) {
	srv := testsmtp.Start(t, testsmtp.Options{})
	c := newClient(t, relayConfig(srv))
	var res sendResult
	c.Send(t.Context(), bounce, []string{"a@example.net"}, func() io.Reader {
		return io.MultiReader(strings.NewReader("Subject: cut\r\n"), iotest.ErrReader(errors.New("disk on fire")))
	}, func(rs []Result) { res.calls = append(res.calls, rs) })
	if len(res.calls) != 1 || res.calls[0][0].Err == nil || !strings.Contains(res.calls[0][0].Err.Message, "disk on fire") ||
		!res.calls[0][0].Err.Temporary {
		t.Fatalf("reports: %+v", res.calls)
	}
	// Dropping the connection is the only way to abort the message; the
	// server must not have a truncated copy.
	if len(srv.Messages()) != 0 {
		t.Fatal("a truncated message was delivered")
	}
}
