package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/internal/milterclient"
	"github.com/restrictedmail/restrictedmail/internal/pgtest"
	"github.com/restrictedmail/restrictedmail/internal/promtext"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestPostgresStoppedAndRestarted: with PostgreSQL down the milter
// tempfails (451 4.3.0) and the LMTP endpoint answers 451, so Postfix keeps
// the message; /readyz and restrictedmail_store_up say the store is down.
// Once PostgreSQL is back, without restarting restrictedmail, the message
// Postfix hands over again is distributed once.
func TestPostgresStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	pg := pgtest.New(t) // its own cluster: this test stops it
	url := pg.NewDB(t)
	d, _, relay := startOpsWith(t, `url = "`+url+`"
connect_timeout = "2s"`)
	base := "http://" + d.HTTPAddr().String()
	ctx := context.Background()

	// The token comes from another store handle, as `token issue` would.
	issuer, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	tok := token.Generate()
	rec := token.Record{ID: token.NewID(), Hash: token.HashOf(tok), List: "board@example.org", Created: time.Now().UTC(), UsesAllowed: 1}
	if err := issuer.AddToken(ctx, rec); err != nil {
		t.Fatal(err)
	}
	issuer.Close()
	msg := opsMessage(tok)
	milter := d.MilterAddr().String()
	if v, err := milterclient.Ask("tcp", milter, "alice@example.net", []string{"board@example.org"}, msg); err != nil || !v.Accepted {
		t.Fatalf("milter with PostgreSQL up: %v, %v", v, err)
	}

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	// During the milter check: a temporary failure, never an accept.
	v, err := milterclient.Ask("tcp", milter, "alice@example.net", []string{"board@example.org"}, msg)
	if err != nil || v.Accepted || !strings.HasPrefix(v.Reply, "451 4.3.0") {
		t.Errorf("milter with PostgreSQL down: %v (%q), %v; want 451 4.3.0", v, v.Reply, err)
	}
	// During the spend: 451, Postfix keeps the message.
	if err := lmtpDeliver(t, d.LMTPAddr().String(), msg); !isCode(err, 451) {
		t.Errorf("LMTP with PostgreSQL down: %v; want 451", err)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "store:") {
		t.Errorf("/readyz with PostgreSQL down: %d %q", code, body)
	}
	if m, err := promtext.Fetch(base + "/metrics"); err != nil || m.Get("restrictedmail_store_up") != 0 || !m.Has("restrictedmail_store_up") {
		t.Errorf("store_up with PostgreSQL down: %v, %v", m.Get("restrictedmail_store_up"), err)
	}
	if n := len(relay.Messages()); n != 0 {
		t.Errorf("%d copies sent with PostgreSQL down", n)
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "ready after PostgreSQL restarted", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == 200
	})
	// Postfix hands the message over until it gets 250; a connection of
	// the pool that died with the server may cost one more 451.
	waitFor(t, 30*time.Second, "LMTP 250 after PostgreSQL restarted", func() bool {
		err := lmtpDeliver(t, d.LMTPAddr().String(), msg)
		if err != nil && !isCode(err, 451) {
			t.Fatalf("LMTP after restart: %v", err)
		}
		return err == nil
	})
	relay.WaitRecipients(t, len(opsMembers), 10*time.Second)
	db, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.TokenByID(ctx, rec.ID); err != nil || got.UsesSpent != 1 {
		t.Errorf("token after restart: spent %d, %v; want 1", got.UsesSpent, err)
	}
	if m, err := promtext.Fetch(base + "/metrics"); err != nil || m.Get("restrictedmail_store_up") != 1 {
		t.Errorf("store_up after restart: %v, %v", m.Get("restrictedmail_store_up"), err)
	}
	// Handed over again (a lost 250): nothing sent twice.
	if err := lmtpDeliver(t, d.LMTPAddr().String(), msg); err != nil {
		t.Errorf("LMTP again: %v", err)
	}
	if n := len(relay.Recipients()); n != len(opsMembers) {
		t.Errorf("%d copies in all, want %d", n, len(opsMembers))
	}
}

func isCode(err error, code int) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code == code
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
