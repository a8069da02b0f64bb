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
	if len(nodes) != 2 {
		t.Fatalf("nodes = %+v, want ahead and behind", nodes)
	}
	for _, n := range nodes {
		if !n.Live || n.RenewedAt.Sub(real).Abs() > time.Minute || n.ExpiresAt.Sub(n.RenewedAt) != 5*time.Second {
			t.Errorf("lease %+v: not timed by the database's clock (now %v)", n, real)
		}
	}
	// A clock far behind does not make a current lease look lapsed to a
	// takeover, nor keep a lapsed lease alive.
	call := func(id string, owner switchback.NodeLease) {
		t.Helper()
		tr := &switchback.Transfer{TenantID: "acme", ID: id, ExternalConversationID: "conv-" + id,
			Type: switchback.TypeSIP, Status: switchback.StatusActive,
			SIP: &switchback.SIP{ReturnTransferType: switchback.ReturnBYE}, CreatedAt: real, ExpiresAt: real.Add(time.Hour)}
		if _, _, err := ahead.CreateTransfer(ctx, tr, real); err != nil {
			t.Fatal(err)
		}
		if _, err := ahead.MatchTransfer(ctx, "acme", id, switchback.CallClaim{Owner: owner}, real); err != nil {
			t.Fatal(err)
		}
	}
	call("of-ahead", a)
	if calls, err := behind.TakeOverCalls(ctx, b, real.Add(-2*time.Hour), 10); err != nil || len(calls) != 0 {
		t.Fatalf("takeover of a current lease's call: %+v, %v", calls, err)
	}
	short, err := ahead.AcquireNode(ctx, "short", 100*time.Millisecond, real)
	if err != nil {
		t.Fatal(err)
	}
	call("of-short", short)
	time.Sleep(200 * time.Millisecond)
	if calls, err := behind.TakeOverCalls(ctx, b, real.Add(-2*time.Hour), 10); err != nil || len(calls) != 1 || calls[0].ID != "of-short" {
		t.Fatalf("takeover of a lapsed lease's call on a clock two hours behind: %+v, %v", calls, err)
	}
	if err := ahead.RenewNode(ctx, short, time.Minute, real.Add(-time.Hour)); switchback.ErrorCode(err) != switchback.EFENCED {
		t.Fatalf("renew a lapsed lease on a clock an hour behind: %v", err)
	}
}
