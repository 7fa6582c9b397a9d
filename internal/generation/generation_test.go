package generation

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/milter"
	"github.com/restrictedmail/restrictedmail/relay"
)

// TestDefaultsAgree: the core packages' defaults for zero options are the
// configuration's documented defaults, so that a part built by hand (a
// test, the dry run) behaves as the daemon does.
func TestDefaultsAgree(t *testing.T) {
	t.Parallel()
	d := config.Default()
	if d.Relay.MaxRecipients != relay.DefaultMaxRecipients || d.Relay.Connections != relay.DefaultConnections ||
		d.Relay.ConnectTimeout.D() != relay.DefaultConnectTimeout || d.Relay.CommandTimeout.D() != relay.DefaultCommandTimeout {
		t.Errorf("relay defaults: config %+v, relay %d %d %v %v", d.Relay, relay.DefaultMaxRecipients, relay.DefaultConnections, relay.DefaultConnectTimeout, relay.DefaultCommandTimeout)
	}
	if d.Milter.ReadTimeout.D() != milter.DefaultTimeout {
		t.Errorf("milter read timeout: config %v, milter %v", d.Milter.ReadTimeout, milter.DefaultTimeout)
	}
}

// TestGeneration maps one configuration onto the core's options.
func TestGeneration(t *testing.T) {
	t.Parallel()
	doc := `hostname = "mx.example.org"
recipient_delimiter = "+-"
[store]
path = "state.db"
[relay]
address = "127.0.0.1:25"
max_recipients = 7
[tokens]
prefix = "LEGOTOKEN"
header = "X-Token"
default_ttl = "2h"
default_uses = 3
guess_limit = 4
[lmtp]
give_up_after = "5h"
[[lists]]
address = "board@example.org"
name = "Board"
recipients = ["a@example.net", "b@example.net"]
bounce_address = "board-bounces@example.org"
hide_sender = true
[[lists]]
address = "events@example.org"
list_id = "events.list.example.org"
recipients = ["c@example.net"]
bounce_address = "events-bounces@example.org"
`
	file := filepath.Join(t.TempDir(), "restrictedmail.toml")
	cfg, problems := config.Parse([]byte(doc), file)
	if problems.HasErrors() {
		t.Fatal(problems)
	}
	g, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := g.Rules
	if r.Delimiter != "+-" || r.Finder.Prefix != "LEGOTOKEN" || r.Finder.Header != "X-Token" || r.Source != file ||
		r.Issue.TTL != 2*time.Hour || r.Issue.Uses != 3 || len(r.Lists) != 2 {
		t.Fatalf("rules %+v", r)
	}
	board, _ := r.ListFor(address.MustParse("board-x@example.org"))
	if board == nil || board.Name != "Board" || !board.HideSender || board.Bounce.String() != "board-bounces@example.org" || len(board.Members) != 2 || board.ID() != "board.example.org" {
		t.Errorf("board %+v", board)
	}
	if ev := r.List(address.MustParse("events@example.org")); ev == nil || ev.ID() != "events.list.example.org" {
		t.Errorf("events %+v", ev)
	}
	s := g.Delivery
	if s.Rules != r || s.Relay == nil || s.Hostname != "mx.example.org" || s.GiveUpAfter != 5*time.Hour || s.SpoolDir != cfg.SpoolDir() {
		t.Errorf("settings %+v", s)
	}
	if o := RelayOptions(cfg); o.Address != "127.0.0.1:25" || o.MaxRecipients != 7 || o.CommandTimeout != 5*time.Minute {
		t.Errorf("relay options %+v", o)
	}
	if l := GuessLimits(cfg); l.Limit != 4 || l.Window != 10*time.Minute || l.Block != 15*time.Minute {
		t.Errorf("guess limits %+v", l)
	}
}
