// Package fleet keeps a Switchback node's place among the nodes sharing a
// store (DESIGN.md "Multi-node"): it acquires the node's lease at start,
// renews it on every heartbeat, reports when it is lost, releases it on a
// clean exit, and completes the calls of nodes that were lost. Membership
// is nothing but the store's lease rows: no cluster protocol runs between
// nodes.
package fleet

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchback/switchback"
)

// Defaults. With them a node that dies has its calls completed by another
// within TTL plus one heartbeat (20 s), and a node whose store stops
// answering knows it has lost its lease when the store may think so.
const (
	DefaultHeartbeat = 5 * time.Second
	DefaultTTL       = 15 * time.Second
)

// takeoverBatch bounds the calls one takeover statement completes; a sweep
// runs batches until one comes back short.
const takeoverBatch = 100

// Ticker is the heartbeat's clock: a channel of ticks, and a way to stop
// them. NewTicker wraps time.Ticker; tests pass one they drive by hand.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// NewTicker returns a Ticker on time.NewTicker.
func NewTicker(d time.Duration) Ticker { return timeTicker{time.NewTicker(d)} }

type timeTicker struct{ t *time.Ticker }

func (t timeTicker) C() <-chan time.Time { return t.t.C }
func (t timeTicker) Stop()               { t.t.Stop() }

// Options configure a Node.
type Options struct {
	// Store holds the leases; Switchback's stores all do.
	Store switchback.NodeStore
	// ID names the node, the same across its restarts; see DefaultID.
	ID string
	// Heartbeat is how often the lease is renewed and lost nodes' calls
	// are looked for; default DefaultHeartbeat.
	Heartbeat time.Duration
	// TTL is how long the lease lasts without a renewal; default
	// DefaultTTL. It must be longer than Heartbeat.
	TTL time.Duration
	// Clock is the node's clock, which a single node's store times leases
	// by; default switchback.SystemClock.
	Clock switchback.Clock
	// Log gets the lease's loss and every call taken over.
	Log *slog.Logger
	// NewTicker makes the heartbeat; default NewTicker.
	NewTicker func(time.Duration) Ticker
	// OnTakeover, when set, is called with the calls each takeover
	// completed: for metrics, or to wake whoever waits on them.
	OnTakeover func([]switchback.OrphanedCall)
}

// Node is a node's lease and the loop that keeps it. Start one, give its
// Lease to the transfer service, Run it, and Release it on a clean exit.
type Node struct {
	o     Options
	lease switchback.NodeLease

	lost     chan struct{}
	lostOnce sync.Once
	taken    atomic.Int64

	mu         sync.Mutex
	validUntil time.Time // on the node's clock: when the lease lapses unless renewed
	released   bool
}

// DefaultID is a node id derived from the machine's host name and the
// node's SIP listen address: stable across restarts, and distinct for
// nodes sharing a machine.
func DefaultID(hostname, sipListen string) string { return hostname + "/" + sipListen }

// Start acquires a new lease for o.ID: a new epoch, which supersedes any
// lease an earlier start under that id held. Acquire it before the node
// takes its first call, so every call is owned by it.
func Start(ctx context.Context, o Options) (*Node, error) {
	if o.Store == nil || o.ID == "" {
		return nil, errors.New("fleet: a node needs a store and an id")
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < 2*o.Heartbeat {
		// One heartbeat lost to a slow store must not cost the lease
		// (config.Validate holds node.ttl to the same).
		return nil, errors.New("fleet: the lease's TTL must be at least twice its heartbeat")
	}
	if o.Clock == nil {
		o.Clock = switchback.SystemClock
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.NewTicker == nil {
		o.NewTicker = NewTicker
	}
	// The lease is current from before the request is sent: the store's
	// expiry is no earlier than this one.
	start := o.Clock()
	l, err := o.Store.AcquireNode(ctx, o.ID, o.TTL, start)
	if err != nil {
		return nil, err
	}
	o.Log.Info("node lease acquired", "node", l.Node, "epoch", l.Epoch, "ttl", o.TTL.String())
	return &Node{o: o, lease: l, lost: make(chan struct{}), validUntil: start.Add(o.TTL)}, nil
}

// Lease returns the node's lease, which never changes: give it to
// transfer.Options.Node. Once the lease is lost the store refuses every
// write carrying it.
func (n *Node) Lease() switchback.NodeLease { return n.lease }

// Lost is closed once the node has lost its lease: a renewal found it
// superseded or lapsed, or none succeeded within the TTL. From then on
// the store refuses the node's writes for its calls and other nodes take
// them over; the node should stop taking calls and end the ones it holds.
// A lost lease is never regained: a new Start is a new epoch.
func (n *Node) Lost() <-chan struct{} { return n.lost }

// Live reports whether the node still holds its lease: it has neither
// lost nor released it.
func (n *Node) Live() bool {
	select {
	case <-n.lost:
		return false
	default:
	}
	return !n.isReleased()
}

// TakenOver returns how many calls of lost nodes this node has completed.
func (n *Node) TakenOver() int64 { return n.taken.Load() }

// Run takes over lost nodes' calls at once, then renews the lease and
// takes over again on every heartbeat, until ctx ends (nil) or the lease
// is lost (an EFENCED error, with Lost closed).
func (n *Node) Run(ctx context.Context) error {
	t := n.o.NewTicker(n.o.Heartbeat)
	defer t.Stop()
	if err := n.takeOver(ctx); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		if err := n.beat(ctx); err != nil {
			return err
		}
	}
}

// beat is one heartbeat: renew the lease, then take over lost nodes'
// calls. It returns an error only when the lease is lost, and does nothing
// once the lease is released.
func (n *Node) beat(ctx context.Context) error {
	if n.isReleased() {
		return nil
	}
	if err := n.renew(ctx); err != nil {
		return err
	}
	return n.takeOver(ctx)
}

// renew renews the lease, waiting no longer than it has left: past that,
// the store may already have let it lapse.
func (n *Node) renew(ctx context.Context) error {
	n.mu.Lock()
	until := n.validUntil
	n.mu.Unlock()
	start := n.o.Clock()
	if !start.Before(until) {
		return n.lose(switchback.Errorf(switchback.EFENCED, "node %q could not renew its lease (epoch %d) within its TTL", n.lease.Node, n.lease.Epoch))
	}
	rctx, cancel := context.WithTimeout(ctx, until.Sub(start))
	err := n.o.Store.RenewNode(rctx, n.lease, n.o.TTL, start)
	cancel()
	switch {
	case err == nil:
		n.mu.Lock()
		n.validUntil = start.Add(n.o.TTL)
		n.mu.Unlock()
		return nil
	case switchback.ErrorCode(err) == switchback.EFENCED:
		return n.lose(err)
	case ctx.Err() != nil:
		return nil // stopping
	}
	if !n.o.Clock().Before(until) {
		return n.lose(switchback.Errorf(switchback.EFENCED, "node %q could not renew its lease (epoch %d) within its TTL: %v", n.lease.Node, n.lease.Epoch, err))
	}
	n.o.Log.Warn("renew the node lease; retrying on the next heartbeat", "node", n.lease.Node, "epoch", n.lease.Epoch,
		"left", until.Sub(n.o.Clock()).String(), "err", err)
	return nil
}

// takeOver completes the calls of lost nodes, a batch at a time. A store
// that cannot be reached only postpones it to the next heartbeat; one that
// finds this node's own lease dead means the node lost it.
func (n *Node) takeOver(ctx context.Context) error {
	for {
		calls, err := n.o.Store.TakeOverCalls(ctx, n.lease, n.o.Clock(), takeoverBatch)
		if switchback.ErrorCode(err) == switchback.EFENCED {
			return n.lose(err)
		} else if err != nil {
			if ctx.Err() == nil {
				n.o.Log.Warn("take over lost nodes' calls; retrying on the next heartbeat", "err", err)
			}
			return nil
		}
		if len(calls) > 0 {
			n.taken.Add(int64(len(calls)))
			for _, c := range calls {
				n.o.Log.Warn("call of a lost node completed as a caller disconnect", "tenant", c.TenantID, "transfer", c.ID,
					"lost_node", c.Owner.Node, "lost_epoch", c.Owner.Epoch, "reason", c.Reason)
			}
			if n.o.OnTakeover != nil {
				n.o.OnTakeover(calls)
			}
		}
		if len(calls) < takeoverBatch {
			return nil
		}
	}
}

// lose marks the lease lost, once, and returns err. A lease released on a
// clean exit is not lost: a heartbeat racing the release finds it ended.
func (n *Node) lose(err error) error {
	if n.isReleased() {
		return err
	}
	n.lostOnce.Do(func() {
		n.o.Log.Error("node lease lost: this node may write nothing more for its calls", "node", n.lease.Node,
			"epoch", n.lease.Epoch, "err", err)
		close(n.lost)
	})
	return err
}

func (n *Node) isReleased() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.released
}

// Release ends the lease on a clean exit, once Run has returned and the
// node's calls have ended: any call left is taken over by another node at
// once. Releasing a lost lease changes nothing.
func (n *Node) Release(ctx context.Context) error {
	n.mu.Lock()
	n.released = true
	n.mu.Unlock()
	if err := n.o.Store.ReleaseNode(ctx, n.lease, n.o.Clock()); err != nil {
		return err
	}
	n.o.Log.Info("node lease released", "node", n.lease.Node, "epoch", n.lease.Epoch)
	return nil
}
