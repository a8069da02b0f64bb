package switchback

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// NodeLease names a node's tenure in the store: the node's id and the epoch
// of the lease it holds. The epoch grows at every start of a node with that
// id, so a node restarted under the same id never passes for its former
// self.
//
// A node's writes for its calls carry its lease, and the store refuses them
// (EFENCED) once that lease is no longer current, or when the call belongs
// to another lease. The zero NodeLease is no node at all: a single node
// running without a lease, whose writes are never fenced and whose calls
// are left to the AbandonCalls backstop.
type NodeLease struct {
	Node  string
	Epoch int64
}

// IsZero reports whether l is no node.
func (l NodeLease) IsZero() bool { return l.Node == "" }

// String is the lease as logs show it: node@epoch, or "none".
func (l NodeLease) String() string {
	if l.IsZero() {
		return "none"
	}
	return l.Node + "@" + strconv.FormatInt(l.Epoch, 10)
}

// NodeState is a node's lease as the store lists it. On a store shared by
// several nodes the times are the store's own clock, which every node
// agrees on; on a single node's store they are that node's.
type NodeState struct {
	NodeLease
	AcquiredAt time.Time // when this epoch began
	RenewedAt  time.Time // the last heartbeat
	ExpiresAt  time.Time // when the lease lapses unless renewed
	ReleasedAt time.Time // zero unless the node released it on a clean exit
	// Live reports whether the lease was current at the store's clock when
	// it was listed.
	Live bool
}

// Why a lease is no longer current, as TakeOverCalls reports it.
const (
	LeaseExpired    = "lease expired"    // not renewed within its TTL
	LeaseReleased   = "lease released"   // the node exited cleanly with calls left
	LeaseSuperseded = "lease superseded" // a later start under the same id took it
	LeaseMissing    = "no lease"         // the store has no lease for the node
)

// EndedByNodeLost is the "by" of the call.ended event TakeOverCalls records
// for each call it completes.
const EndedByNodeLost = "node-lost"

// OrphanedCall is a call TakeOverCalls completed because the node holding
// it was lost.
type OrphanedCall struct {
	TransferKey
	Owner  NodeLease // the lease that held the call
	Reason string    // why that lease is dead: LeaseExpired, LeaseReleased, LeaseSuperseded or LeaseMissing
}

// NodeLostResult is the return result TakeOverCalls records on a call whose
// node was lost: nothing was handed back, the call ended with its node, so
// the method is BYE with no SIP status and no fallback.
func NodeLostResult(owner NodeLease, why string, at time.Time) *ReturnResult {
	return &ReturnResult{Method: ReturnBYE, Reason: fmt.Sprintf("node %q lost (%s)", owner.Node, why), At: at}
}

// NodeLostEvent is the conversation event TakeOverCalls records for a call
// whose node was lost.
func NodeLostEvent(transferID string, owner NodeLease, why string, at time.Time) ConversationEvent {
	return ConversationEvent{At: at, TransferID: transferID, Type: EventCallEnded, Data: map[string]string{
		"by": EndedByNodeLost, "node": owner.Node, "epoch": strconv.FormatInt(owner.Epoch, 10), "reason": why}}
}

// CallClaim is what matching a call records and checks besides the
// transfer itself.
type CallClaim struct {
	// Owner is the node taking the call; its lease must be current
	// (EFENCED otherwise), and the transfer records it as the call's owner.
	// Zero: no node (see NodeLease).
	Owner NodeLease
	// MaxCalls, when positive, is how many calls the tenant may have
	// ONGOING at once across every node sharing the store: the match is
	// refused with EBUSY when it already has that many. Calls matched
	// without a limit are not counted; calls matched under a higher limit
	// are, until they end.
	MaxCalls int
}

// NodeStore keeps the leases of the nodes sharing a store and lets any of
// them complete the calls of one that was lost (DESIGN.md "Multi-node").
//
// A lease is current from its acquisition until its expiry, which every
// renewal pushes to the renewal's time plus the TTL. Once it lapses, is
// released, or a later acquisition for the same node id supersedes it, it
// is dead for good: nothing renews it, and the store refuses every write
// carrying it. Stores shared by several nodes read lease times from their
// own clock, never the now passed in, so nodes whose clocks disagree still
// agree on whose lease is current; a single node's store uses now.
type NodeStore interface {
	// AcquireNode starts a new lease for node id, current for ttl, and
	// returns it. Its epoch is one more than the node id's last one (1 the
	// first time): a node started again under the same id supersedes its
	// former lease at once, whether or not that one was still current.
	AcquireNode(ctx context.Context, id string, ttl time.Duration, now time.Time) (NodeLease, error)

	// RenewNode pushes the expiry of a current lease to ttl from now.
	// EFENCED, changing nothing, when the lease is no longer current:
	// expired, released, or superseded.
	RenewNode(ctx context.Context, l NodeLease, ttl time.Duration, now time.Time) error

	// ReleaseNode ends a lease on a clean exit, as if it expired now. A
	// lease that is no longer current is left as it is, without error.
	ReleaseNode(ctx context.Context, l NodeLease, now time.Time) error

	// Nodes lists the latest lease of every node id the store has seen,
	// ordered by id, each with whether it is current.
	Nodes(ctx context.Context, now time.Time) ([]NodeState, error)

	// TakeOverCalls completes up to limit ONGOING transfers whose owner's
	// lease is no longer current, and returns them. Each becomes COMPLETED
	// at now with outputContext.transferType CALLER_DISCONNECT, the return
	// result NodeLostResult, and its return password erased; its
	// conversation, if it names one, gets the event NodeLostEvent and keeps
	// its state, and is free for its next leg. Transfers without an owner
	// are left to AbandonCalls. The taker's own lease, by, must be current
	// (EFENCED) unless it is zero. Concurrent takeovers by several nodes
	// skip each other's rows, so each call is taken over once.
	TakeOverCalls(ctx context.Context, by NodeLease, now time.Time, limit int) ([]OrphanedCall, error)
}

// LeaseLostError is the EFENCED refusing a write, or a renewal, carrying a
// lease that is no longer current.
func LeaseLostError(l NodeLease) *Error {
	return Errorf(EFENCED, "node %q lost its lease (epoch %d): it may write nothing more", l.Node, l.Epoch)
}

// NotOwnerError is the EFENCED refusing a write for call transfer id by a
// lease other than the one that owns the call.
func NotOwnerError(id string, owner, by NodeLease) *Error {
	return Errorf(EFENCED, "call transfer %q is held by %s, not %s", id, owner, by)
}

// BusyError is the EBUSY refusing a call past its tenant's limit of calls
// at once.
func BusyError(tenantID string, maxCalls int) *Error {
	return Errorf(EBUSY, "tenant %q already has %d calls in progress, its limit", tenantID, maxCalls)
}
