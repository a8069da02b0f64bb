package fleet

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/sqlite"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeStore is a NodeStore whose methods the test sets; unset ones succeed.
type fakeStore struct {
	acquire  func(id string, ttl time.Duration, now time.Time) (switchback.NodeLease, error)
	renew    func(ctx context.Context, l switchback.NodeLease, ttl time.Duration, now time.Time) error
	release  func(l switchback.NodeLease, now time.Time) error
	takeOver func(by switchback.NodeLease, now time.Time, limit int) ([]switchback.OrphanedCall, error)
}

func (f *fakeStore) AcquireNode(_ context.Context, id string, ttl time.Duration, now time.Time) (switchback.NodeLease, error) {
	if f.acquire == nil {
		return switchback.NodeLease{Node: id, Epoch: 1}, nil
	}
	return f.acquire(id, ttl, now)
}

func (f *fakeStore) RenewNode(ctx context.Context, l switchback.NodeLease, ttl time.Duration, now time.Time) error {
	if f.renew == nil {
		return nil
	}
	return f.renew(ctx, l, ttl, now)
}

func (f *fakeStore) ReleaseNode(_ context.Context, l switchback.NodeLease, now time.Time) error {
	if f.release == nil {
		return nil
	}
	return f.release(l, now)
}

func (f *fakeStore) Nodes(context.Context, time.Time) ([]switchback.NodeState, error) {
	return nil, nil
}

func (f *fakeStore) TakeOverCalls(_ context.Context, by switchback.NodeLease, now time.Time, limit int) ([]switchback.OrphanedCall, error) {
	if f.takeOver == nil {
		return nil, nil
	}
	return f.takeOver(by, now, limit)
}

// clock is a node's clock that the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// ticker is a heartbeat the test drives.
type ticker struct{ c chan time.Time }

func (t *ticker) C() <-chan time.Time { return t.c }
func (t *ticker) Stop()               {}

func start(t *testing.T, o Options) *Node {
	t.Helper()
	n, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func isLost(n *Node) bool {
	select {
	case <-n.Lost():
		return true
	default:
		return false
	}
}

func TestStartAcquiresTheLease(t *testing.T) {
	var gotTTL time.Duration
	var gotNow time.Time
	store := &fakeStore{acquire: func(id string, ttl time.Duration, now time.Time) (switchback.NodeLease, error) {
		gotTTL, gotNow = ttl, now
		return switchback.NodeLease{Node: id, Epoch: 7}, nil
	}}
	n := start(t, Options{Store: store, ID: "a", Clock: func() time.Time { return t0 }})
	if n.Lease() != (switchback.NodeLease{Node: "a", Epoch: 7}) || gotTTL != DefaultTTL || !gotNow.Equal(t0) || isLost(n) || !n.Live() {
		t.Fatalf("lease %v, ttl %v at %v", n.Lease(), gotTTL, gotNow)
	}
	for name, o := range map[string]Options{
		"no id":              {Store: store},
		"no store":           {ID: "a"},
		"TTL below the beat": {Store: store, ID: "a", Heartbeat: 10 * time.Second, TTL: 10 * time.Second},
	} {
		if _, err := Start(context.Background(), o); err == nil {
			t.Errorf("%s: started", name)
		}
	}
	store.acquire = func(string, time.Duration, time.Time) (switchback.NodeLease, error) {
		return switchback.NodeLease{}, errors.New("store down")
	}
	if _, err := Start(context.Background(), Options{Store: store, ID: "a"}); err == nil {
		t.Error("started without a lease")
	}
	if got := DefaultID("sb1", "127.0.0.2:5060"); got != "sb1/127.0.0.2:5060" {
		t.Errorf("DefaultID = %q", got)
	}
}

// TestHeartbeatRenewsWithinTheLease: every beat renews for the TTL, and
// waits for the store no longer than the lease has left.
func TestHeartbeatRenewsWithinTheLease(t *testing.T) {
	c := &clock{now: t0}
	var renewals []time.Time
	store := &fakeStore{renew: func(ctx context.Context, l switchback.NodeLease, ttl time.Duration, now time.Time) error {
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) > DefaultTTL-DefaultHeartbeat {
			t.Errorf("renewal at %v may wait until %v: longer than the lease has left", now, dl)
		}
		if ttl != DefaultTTL || l != (switchback.NodeLease{Node: "a", Epoch: 1}) {
			t.Errorf("renewed %v for %v", l, ttl)
		}
		renewals = append(renewals, now)
		return nil
	}}
	n := start(t, Options{Store: store, ID: "a", Clock: c.Now})
	for i := 0; i < 10; i++ {
		c.Advance(DefaultHeartbeat)
		if err := n.beat(context.Background()); err != nil {
			t.Fatalf("beat %d: %v", i, err)
		}
	}
	if len(renewals) != 10 || !renewals[9].Equal(t0.Add(50*time.Second)) || isLost(n) {
		t.Fatalf("renewals %v, lost %v", renewals, isLost(n))
	}
}

// TestSupersededLeaseIsLost: a renewal the store refuses loses the lease at
// once.
func TestSupersededLeaseIsLost(t *testing.T) {
	store := &fakeStore{renew: func(_ context.Context, l switchback.NodeLease, _ time.Duration, _ time.Time) error {
		return switchback.LeaseLostError(l)
	}}
	c := &clock{now: t0}
	n := start(t, Options{Store: store, ID: "a", Clock: c.Now})
	c.Advance(DefaultHeartbeat)
	if err := n.beat(context.Background()); switchback.ErrorCode(err) != switchback.EFENCED || !isLost(n) || n.Live() {
		t.Fatalf("beat: %v, lost %v, live %v", err, isLost(n), n.Live())
	}
}

// TestStoreOutageLosesTheLeaseAtItsTTL: while renewals fail the node keeps
// its lease for what is left of it, and gives it up once the store may
// have let it lapse.
func TestStoreOutageLosesTheLeaseAtItsTTL(t *testing.T) {
	c := &clock{now: t0}
	down := false
	store := &fakeStore{renew: func(context.Context, switchback.NodeLease, time.Duration, time.Time) error {
		if down {
			return errors.New("connection refused")
		}
		return nil
	}}
	n := start(t, Options{Store: store, ID: "a", Clock: c.Now})
	c.Advance(DefaultHeartbeat)
	if err := n.beat(context.Background()); err != nil { // renewed at t0+5s: current until t0+20s
		t.Fatal(err)
	}
	down = true
	for _, at := range []time.Duration{10 * time.Second, 15 * time.Second} {
		c.Advance(DefaultHeartbeat)
		if err := n.beat(context.Background()); err != nil || isLost(n) {
			t.Fatalf("at +%v, with time left: %v, lost %v", at, err, isLost(n))
		}
	}
	c.Advance(DefaultHeartbeat) // t0+20s
	if err := n.beat(context.Background()); switchback.ErrorCode(err) != switchback.EFENCED || !isLost(n) {
		t.Fatalf("at the TTL: %v, lost %v", err, isLost(n))
	}
}

// TestTakeoverRunsInBatchesAndReports: a beat takes over batch after batch
// until one comes back short, reporting each.
func TestTakeoverRunsInBatchesAndReports(t *testing.T) {
	batches := []int{takeoverBatch, takeoverBatch, 3}
	store := &fakeStore{takeOver: func(by switchback.NodeLease, _ time.Time, limit int) ([]switchback.OrphanedCall, error) {
		if by != (switchback.NodeLease{Node: "b", Epoch: 1}) || limit != takeoverBatch {
			t.Errorf("takeover by %v, limit %d", by, limit)
		}
		if len(batches) == 0 {
			t.Fatal("a takeover after a short batch")
		}
		calls := make([]switchback.OrphanedCall, batches[0])
		for i := range calls {
			calls[i] = switchback.OrphanedCall{TransferKey: switchback.TransferKey{TenantID: "acme", ID: fmt.Sprint(len(batches), i)},
				Owner: switchback.NodeLease{Node: "a", Epoch: 1}, Reason: switchback.LeaseExpired}
		}
		batches = batches[1:]
		return calls, nil
	}}
	var reported int
	n := start(t, Options{Store: store, ID: "b", OnTakeover: func(calls []switchback.OrphanedCall) { reported += len(calls) }})
	if err := n.beat(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n.TakenOver() != 2*takeoverBatch+3 || reported != 2*takeoverBatch+3 {
		t.Fatalf("taken over %d, reported %d", n.TakenOver(), reported)
	}

	// A store that fails only postpones the takeover; one that finds this
	// node's own lease dead means it was lost.
	store.takeOver = func(switchback.NodeLease, time.Time, int) ([]switchback.OrphanedCall, error) {
		return nil, errors.New("timeout")
	}
	if err := n.beat(context.Background()); err != nil || isLost(n) {
		t.Fatalf("a failing takeover: %v, lost %v", err, isLost(n))
	}
	store.takeOver = func(by switchback.NodeLease, _ time.Time, _ int) ([]switchback.OrphanedCall, error) {
		return nil, switchback.LeaseLostError(by)
	}
	if err := n.beat(context.Background()); switchback.ErrorCode(err) != switchback.EFENCED || !isLost(n) {
		t.Fatalf("a takeover finding the lease dead: %v, lost %v", err, isLost(n))
	}
}

// TestRunStopsOnLossOrCancel drives Run with a ticker: it returns nil when
// its context ends, and the loss when the lease is lost.
func TestRunStopsOnLossOrCancel(t *testing.T) {
	tick := &ticker{c: make(chan time.Time)}
	var mu sync.Mutex
	refuse := false
	store := &fakeStore{renew: func(_ context.Context, l switchback.NodeLease, _ time.Duration, _ time.Time) error {
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			return switchback.LeaseLostError(l)
		}
		return nil
	}}
	newTicker := func(d time.Duration) Ticker {
		if d != DefaultHeartbeat {
			t.Errorf("ticker every %v", d)
		}
		return tick
	}

	n := start(t, Options{Store: store, ID: "a", NewTicker: newTicker})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	tick.c <- t0 // a renewal that succeeds
	cancel()
	if err := <-done; err != nil || isLost(n) {
		t.Fatalf("Run after cancel: %v, lost %v", err, isLost(n))
	}

	n = start(t, Options{Store: store, ID: "a", NewTicker: newTicker})
	mu.Lock()
	refuse = true // another start took the id
	mu.Unlock()
	go func() { done <- n.Run(context.Background()) }()
	tick.c <- t0
	if err := <-done; switchback.ErrorCode(err) != switchback.EFENCED {
		t.Fatalf("Run after the lease was superseded: %v", err)
	}
	<-n.Lost()
}

// TestReleaseIsNoLoss: a released lease is ended in the store, and the
// heartbeats that follow neither renew it nor report it lost.
func TestReleaseIsNoLoss(t *testing.T) {
	var released switchback.NodeLease
	renewed := 0
	store := &fakeStore{
		release: func(l switchback.NodeLease, _ time.Time) error { released = l; return nil },
		renew: func(context.Context, switchback.NodeLease, time.Duration, time.Time) error {
			renewed++
			return nil
		},
		takeOver: func(by switchback.NodeLease, _ time.Time, _ int) ([]switchback.OrphanedCall, error) {
			return nil, switchback.LeaseLostError(by)
		},
	}
	n := start(t, Options{Store: store, ID: "a"})
	if err := n.Release(context.Background()); err != nil || released != n.Lease() {
		t.Fatalf("release: %v, released %v", err, released)
	}
	if err := n.beat(context.Background()); err != nil || renewed != 0 || isLost(n) || n.Live() {
		t.Fatalf("beat after release: %v, renewed %d, lost %v, live %v", err, renewed, isLost(n), n.Live())
	}
}

// TestLostNodesCallsAreTakenOverWithin30s runs two nodes on one SQLite
// store with the default heartbeat and TTL, on a clock the test moves.
// Node a takes a call and dies; node b completes the call on its first
// heartbeat past a's lease, well within 30 s of a's death; a, back from a
// pause, finds its lease lost and can write nothing over b's outcome.
func TestLostNodesCallsAreTakenOverWithin30s(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sb.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{now: t0}
	var taken []switchback.OrphanedCall
	var takenAt time.Time
	a := start(t, Options{Store: db, ID: "a", Clock: c.Now})
	b := start(t, Options{Store: db, ID: "b", Clock: c.Now, OnTakeover: func(calls []switchback.OrphanedCall) {
		taken, takenAt = calls, c.Now()
	}})

	tr := &switchback.Transfer{TenantID: "acme", ID: "t1", ExternalConversationID: "conv", Type: switchback.TypeSIP,
		SIP: &switchback.SIP{ReturnTransferType: switchback.ReturnBYE}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), RequestHash: "h"}
	if _, _, err := db.CreateTransfer(ctx, tr, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.MatchTransfer(ctx, "acme", "t1", switchback.CallClaim{Owner: a.Lease()}, t0); err != nil {
		t.Fatal(err)
	}

	// Both beat for a while; a's last renewal is at t0+10s, then it dies.
	for i := 0; i < 2; i++ {
		c.Advance(DefaultHeartbeat)
		for _, n := range []*Node{a, b} {
			if err := n.beat(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	died := c.Now()
	for taken == nil {
		c.Advance(DefaultHeartbeat)
		if err := b.beat(ctx); err != nil {
			t.Fatal(err)
		}
		if c.Now().Sub(died) > 30*time.Second {
			t.Fatal("a's call not taken over 30 s after it died")
		}
	}
	if len(taken) != 1 || taken[0].ID != "t1" || taken[0].Owner != a.Lease() || taken[0].Reason != switchback.LeaseExpired ||
		takenAt.Sub(died) > DefaultTTL+DefaultHeartbeat {
		t.Fatalf("took over %+v %v after a died", taken, takenAt.Sub(died))
	}
	got, _ := db.Transfer(ctx, "acme", "t1")
	if got.Status != switchback.StatusCompleted || got.ReturnResult == nil || got.ReturnResult.Reason != `node "a" lost (lease expired)` {
		t.Fatalf("taken-over transfer: %+v", got)
	}

	// a was only paused: its next heartbeat finds the lease gone, and its
	// writes for the call are refused.
	if err := a.beat(ctx); switchback.ErrorCode(err) != switchback.EFENCED || !isLost(a) {
		t.Fatalf("a back from its pause: %v, lost %v", err, isLost(a))
	}
	_, err = db.EndCall(ctx, &switchback.CallEnd{TenantID: "acme", ID: "t1",
		Output: &switchback.OutputContext{TransferType: switchback.TransferAgent}}, a.Lease(), c.Now())
	if switchback.ErrorCode(err) != switchback.EFENCED {
		t.Fatalf("a's late EndCall: %v", err)
	}
	if isLost(b) || b.TakenOver() != 1 {
		t.Fatalf("b: lost %v, taken over %d", isLost(b), b.TakenOver())
	}
}
