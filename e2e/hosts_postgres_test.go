package e2e

import (
	"fmt"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to read the journal as another host would

	"github.com/restrictedmail/restrictedmail/internal/pgtest"
)

// The several-hosts tests again, on the store several hosts really share:
// one PostgreSQL database. Each test has a cluster of its own because the
// outage stops it.

// sharedPostgres is one PostgreSQL database for every host; its outage
// stops the cluster (a crash of the database server) until the returned
// func starts it again.
func sharedPostgres(t *testing.T) sharedStore {
	pg := pgtest.New(t)
	url := pg.NewDB(t)
	return sharedStore{
		name:      "postgres",
		toml:      fmt.Sprintf("url = %q\nconnect_timeout = \"2s\"", url),
		delivered: func(t *testing.T) int { return journalDelivered(t, "pgx", url) },
		outage: func(t *testing.T) func() {
			if err := pg.Stop(); err != nil {
				t.Errorf("no outage: %v", err)
				return func() {}
			}
			return func() {
				if err := pg.Start(); err != nil {
					t.Errorf("restarting PostgreSQL after the outage: %v", err)
				}
			}
		},
	}
}

func TestTwoHostsPostgresTokenGoodOnBoth(t *testing.T) {
	t.Parallel()
	testTokenGoodOnBoth(t, sharedPostgres)
}

func TestTwoHostsPostgresSingleUseTenTimes(t *testing.T) {
	t.Parallel()
	testUsesAcrossHosts(t, sharedPostgres, 1)
}

func TestTwoHostsPostgresThreeUsesTenTimes(t *testing.T) {
	t.Parallel()
	testUsesAcrossHosts(t, sharedPostgres, 3)
}

func TestTwoHostsPostgresSameMessageThroughBoth(t *testing.T) {
	t.Parallel()
	testSameMessageThroughBoth(t, sharedPostgres)
}

func TestFaultTwoHostsPostgresKill9MidFanOut(t *testing.T) {
	t.Parallel()
	if f := testKill9HandOver(t, sharedPostgres, false); f.duplicated != 0 {
		t.Errorf("%d duplicates: the host taking over resent what the journal had recorded", f.duplicated)
	}
}

// TestFaultTwoHostsPostgresStoppedDuringFanOut: PostgreSQL stops while
// host A fans out (at its second relay transaction) and starts again
// later; the message is handed to host B meanwhile.
func TestFaultTwoHostsPostgresStoppedDuringFanOut(t *testing.T) {
	t.Parallel()
	testStoreOutageDuringFanOut(t, sharedPostgres)
}
