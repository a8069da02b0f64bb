package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/pgtest"
	"github.com/switchback/switchback/internal/storetest"
)

// TestTwoNodesKeepTheCallLimit races matches for a tenant's last call
// slots through two stores on one database, as two nodes taking calls at
// once would: no more calls than the limit become ONGOING.
func TestTwoNodesKeepTheCallLimit(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	storetest.ConcurrentCallLimit(t, []switchback.Store{open(t, dsn, time.Second), open(t, dsn, time.Second)})
}

// TestTwoNodesTakeOverEachCallOnce runs the takeovers of two nodes at once
// over the same orphaned calls: each call is taken over once.
func TestTwoNodesTakeOverEachCallOnce(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	storetest.ConcurrentTakeovers(t, []switchback.Store{open(t, dsn, time.Second), open(t, dsn, time.Second)})
}

// TestLeasesRunOnTheDatabaseClock gives two nodes clocks an hour apart:
// their leases are timed by the database alone, so both are current, and
// each one's call is fenced the same way whatever its clock says.
func TestLeasesRunOnTheDatabaseClock(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ahead, behind := open(t, dsn, time.Second), open(t, dsn, time.Second)
	ctx := context.Background()
	real := time.Now()
	a, err := ahead.AcquireNode(ctx, "ahead", 5*time.Second, real.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, err := behind.AcquireNode(ctx, "behind", 5*time.Second, real.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ahead.RenewNode(ctx, a, 5*time.Second, real.Add(2*time.Hour)); err != nil {
		t.Fatalf("renew on a clock far ahead: %v", err)
	}
	if err := behind.RenewNode(ctx, b, 5*time.Second, real.Add(-2*time.Hour)); err != nil {
		t.Fatalf("renew on a clock far behind: %v", err)
	}
	nodes, err := ahead.Nodes(ctx, real.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if !n.Live || n.RenewedAt.Sub(real).Abs() > time.Minute || n.ExpiresAt.Sub(n.RenewedAt) != 5*time.Second {
			t.Errorf("lease %+v: not timed by the database's clock (now %v)", n, real)
		}
	}
	// A clock far ahead does not make a current lease look lapsed to a
	// takeover, nor one far behind keep a lapsed lease alive.
	if calls, err := behind.TakeOverCalls(ctx, b, real.Add(-2*time.Hour), 10); err != nil || len(calls) != 0 {
		t.Fatalf("takeover: %+v, %v", calls, err)
	}
	short, err := ahead.AcquireNode(ctx, "short", 100*time.Millisecond, real)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := ahead.RenewNode(ctx, short, time.Minute, real.Add(-time.Hour)); switchback.ErrorCode(err) != switchback.EFENCED {
		t.Fatalf("renew a lapsed lease on a clock an hour behind: %v", err)
	}
}
