package relay

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

// recordingObserver keeps what the client reports.
type recordingObserver struct {
	mu        sync.Mutex
	connects  []*Error
	txns      int
	delivered int
	errs      []*Error
}

func (o *recordingObserver) RelayConnect(d time.Duration, err *Error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.connects = append(o.connects, err)
}

func (o *recordingObserver) RelayTransaction(d time.Duration, delivered int, errs []*Error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.txns++
	o.delivered += delivered
	o.errs = append(o.errs, errs...)
}

// classes summarises errors as "class/stage" counts.
func classes(errs []*Error) map[string]int {
	out := map[string]int{}
	for _, e := range errs {
		class := "permanent"
		if e.Temporary {
			class = "temporary"
		}
		out[class+"/"+e.Stage]++
	}
	return out
}

// TestObserver: connections, transactions, and each error once with its
// class and stage, however many recipients it failed.
func TestObserver(t *testing.T) {
	t.Parallel()
	srv := testsmtp.Start(t, testsmtp.Options{})
	srv.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		switch rcpt {
		case "gone@example.com":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case "busy@example.com":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		}
		return nil
	})
	cfg := relayConfig(srv)
	cfg.MaxRecipients, cfg.Connections = 2, 1
	obs := &recordingObserver{}
	c := newClient(t, cfg).WithObserver(obs)
	rcpts := []string{"a@example.com", "gone@example.com", "busy@example.com", "b@example.com"}
	send(t, context.Background(), c, rcpts, message)
	obs.mu.Lock()
	if len(obs.connects) != 1 || obs.connects[0] != nil || obs.txns != 2 || obs.delivered != 2 {
		t.Errorf("connects %v, transactions %d, delivered %d; want one good connect, 2 and 2", obs.connects, obs.txns, obs.delivered)
	}
	if got := fmt.Sprint(classes(obs.errs)); got != "map[permanent/rcpt:1 temporary/rcpt:1]" {
		t.Errorf("errors %s", got)
	}
	obs.mu.Unlock()

	// A refused MAIL FROM fails both recipients of the transaction with
	// one error, counted once.
	srv.SetMailHook(func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "not allowed to send as"}
	})
	obs2 := &recordingObserver{}
	send(t, context.Background(), newClient(t, cfg).WithObserver(obs2), []string{"a@example.com", "b@example.com"}, message)
	if got := fmt.Sprint(classes(obs2.errs)); obs2.txns != 1 || got != "map[temporary/mail:1]" {
		t.Errorf("refused MAIL: %d transactions, errors %s", obs2.txns, got)
	}

	// A relay that refuses connections: a connect error, no transaction.
	srv.Refuse()
	obs3 := &recordingObserver{}
	send(t, context.Background(), newClient(t, cfg).WithObserver(obs3), []string{"a@example.com"}, message)
	if len(obs3.connects) != 1 || obs3.connects[0] == nil || !obs3.connects[0].Temporary || obs3.txns != 0 {
		t.Errorf("refused connection: connects %v, transactions %d", obs3.connects, obs3.txns)
	}
	// The client New returns reports to nobody, and WithObserver leaves it so.
	if c0 := newClient(t, cfg); c0.obs != nil {
		t.Errorf("New's client has an observer")
	}
}
