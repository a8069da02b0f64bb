package switchback

import (
	"context"
	"time"
)

// Store keeps transfers, the number pool and API keys durably. Every status
// move is one atomic compare-and-set, so nodes, timers and calls racing for
// one transfer cannot both win. Methods take the current time from the
// caller, which reads it from its injected Clock.
//
// Errors are *Error values with the codes named below; anything else means
// the store could not be reached or failed, and callers report it as
// EUNAVAILABLE.
//
// Calls are fenced (see NodeLease): a match records the lease of the node
// taking the call as the transfer's owner, and every later write for the
// call (CompleteTransfer, SetReturnResult, EndCall, RecordConversation)
// carries the writer's lease, by. Such a write is refused with EFENCED,
// changing nothing, when by is not zero and no longer current, or when the
// transfer's owner is another lease than by; the check is made in the
// write's own statement or transaction. A lease found dead stays dead, and
// TakeOverCalls only moves calls of dead leases, so a node that was
// partitioned from the store or paused past its TTL writes nothing over
// what another node decided.
type Store interface {
	// NonceStore keeps the SIP digest nonce key and the nonces already used,
	// so every node sharing the store accepts each nonce once.
	NonceStore

	// NodeStore keeps the nodes' leases and completes the calls of a node
	// that was lost.
	NodeStore

	// CreateTransfer stores t as ACTIVE. For TypePhoneNumber it leases, in
	// the same transaction, a free number of t.PhoneNumber.Country (free: not
	// leased and out of quarantine at now), taking numbers dedicated to the
	// tenant before shared ones and, among those, the one released longest
	// ago; it sets t.PhoneNumber.TransferNumber and the number's lease runs
	// until t.ExpiresAt. If the tenant already has a transfer with t.ID,
	// nothing changes and the stored transfer is returned with created false.
	// A new transfer whose ExternalConversationID has a leg ONGOING is not
	// stored: ECONFLICT, naming that leg.
	// Errors: EUNPROCESSABLE when the tenant can use no number of that
	// country at all; EEXHAUSTED when every such number is leased or in
	// quarantine.
	CreateTransfer(ctx context.Context, t *Transfer, now time.Time) (stored *Transfer, created bool, err error)

	// Transfer returns one transfer of a tenant, as stored. ENOTFOUND.
	Transfer(ctx context.Context, tenantID, id string) (*Transfer, error)

	// ListTransfers returns a tenant's transfers newest first (by CreatedAt,
	// then ID, both descending), at most f.Limit of them.
	ListTransfers(ctx context.Context, f TransferFilter) ([]*Transfer, error)

	// MatchTransfer moves a transfer ACTIVE→ONGOING because a call arrived:
	// only if it is ACTIVE and now is before its expiry. It sets
	// CallReceivedAt to now, records c.Owner as the call's owner and
	// releases its number into quarantine.
	// EFENCED when c.Owner is not zero and no longer current; ENOTFOUND for
	// no such transfer; EGONE when it is not ACTIVE or expired; ECONFLICT,
	// leaving it ACTIVE, when another transfer of the tenant with the same
	// ExternalConversationID is ONGOING (two legs of a conversation are
	// never live at once, across all nodes sharing the store); EBUSY,
	// leaving it ACTIVE, when c.MaxCalls is positive and the tenant already
	// has that many calls ONGOING that were matched under a limit (across
	// all nodes: two nodes cannot both take the last one).
	MatchTransfer(ctx context.Context, tenantID, id string, c CallClaim, now time.Time) (*Transfer, error)

	// MatchNumber is MatchTransfer for the transfer leasing number e164;
	// c.MaxCalls applies to that transfer's tenant.
	// ENOTFOUND when no unexpired ACTIVE transfer holds that number;
	// EFENCED, ECONFLICT and EBUSY as for MatchTransfer.
	MatchNumber(ctx context.Context, e164 string, c CallClaim, now time.Time) (*Transfer, error)

	// NumberHolder names the unexpired ACTIVE transfer leasing number e164
	// at now, without changing anything, so a call to the number can be
	// admitted by its tenant's limits before the transfer is used up.
	// ENOTFOUND when no such transfer holds it.
	NumberHolder(ctx context.Context, e164 string, now time.Time) (TransferKey, error)

	// CompleteTransfer moves a transfer ONGOING→COMPLETED with its output
	// context, sets CompletedAt to now and erases the return password.
	// ENOTFOUND; EFENCED when by's lease is no longer current; EGONE when it
	// is not ONGOING; EFENCED when another lease owns it.
	CompleteTransfer(ctx context.Context, tenantID, id string, out *OutputContext, by NodeLease, now time.Time) (*Transfer, error)

	// EndCall writes what a call leaves as it ends, in one transaction (see
	// CallEnd), and returns the transfer as it then is. Its errors are those
	// of CompleteTransfer when e.Output is set, else those of
	// SetReturnResult (EGONE aside when only a record is written), and
	// EINVALID for a record RecordConversation would refuse; on any error
	// nothing is written. Every part is fenced by the transfer's owner.
	EndCall(ctx context.Context, e *CallEnd, by NodeLease, now time.Time) (*Transfer, error)

	// SetReturnResult records how a completed transfer's hand-back went.
	// ENOTFOUND; EFENCED when by's lease is no longer current; EGONE when the
	// transfer is not COMPLETED; EFENCED when another lease owns it.
	SetReturnResult(ctx context.Context, tenantID, id string, r *ReturnResult, by NodeLease, now time.Time) error

	// ExpireTransfer moves one transfer ACTIVE→EXPIRED if its expiry is at or
	// before now, releasing its number into quarantine and erasing the return
	// password. It reports whether it made the move.
	ExpireTransfer(ctx context.Context, tenantID, id string, now time.Time) (bool, error)

	// ExpireDue does ExpireTransfer for up to limit transfers that are due,
	// whichever node created them, and returns those it moved. Stores shared
	// by several nodes let concurrent sweeps skip each other's rows.
	ExpireDue(ctx context.Context, now time.Time, limit int) ([]TransferKey, error)

	// AbandonCalls completes, as CALLER_DISCONNECT at now, up to limit
	// ONGOING transfers whose call arrived at or before receivedBefore: calls
	// whose node died with them (a live call ends long before), which would
	// otherwise stay ONGOING and keep their conversation locked. It is the
	// backstop behind TakeOverCalls, for calls without an owner and stores
	// no live node sweeps. It returns those it moved; concurrent sweeps skip
	// each other's rows.
	AbandonCalls(ctx context.Context, receivedBefore, now time.Time, limit int) ([]TransferKey, error)

	// PendingExpiries returns up to limit ACTIVE transfers, soonest expiry
	// first, so a starting node can arm its timers.
	PendingExpiries(ctx context.Context, limit int) ([]TransferKey, error)

	// CountTransfers counts transfers by stored status.
	CountTransfers(ctx context.Context) (map[Status]int, error)

	// AddNumbers adds numbers to the pool; a number already there takes the
	// given country and tenant, which apply from its next lease. It returns
	// how many were new.
	AddNumbers(ctx context.Context, numbers []Number) (added int, err error)

	// RemoveNumbers removes numbers from the pool. It removes none and
	// returns ECONFLICT if any is leased, ENOTFOUND if any is unknown.
	RemoveNumbers(ctx context.Context, e164s []string) error

	// Numbers lists the pool's numbers of a country ("" for all), ordered by
	// country then number, with their state at now.
	Numbers(ctx context.Context, country string, now time.Time) ([]NumberState, error)

	// PoolSummaries counts each country's numbers by state at now, ordered
	// by country.
	PoolSummaries(ctx context.Context, now time.Time) ([]PoolSummary, error)

	// Conversation returns a tenant's conversation: its legs (the transfers
	// with that ExternalConversationID, oldest first), state and events.
	// ENOTFOUND when the tenant has neither a leg nor a record of it.
	Conversation(ctx context.Context, tenantID, externalID string) (*Conversation, error)

	// RecordConversation appends r.Events to the conversation (creating
	// its record on first use) and replaces its state when r.State is not
	// nil, in one transaction, at now. EINVALID for more than
	// MaxEventsPerRecord events; EFENCED when by's lease is no longer
	// current.
	RecordConversation(ctx context.Context, r *ConversationRecord, by NodeLease, now time.Time) error

	// CreateAPIKey stores a new key. ECONFLICT if the id exists.
	CreateAPIKey(ctx context.Context, k *APIKey) error
	// APIKey returns a key by id, revoked or not. ENOTFOUND.
	APIKey(ctx context.Context, id string) (*APIKey, error)
	// RevokeAPIKey revokes a key at now. ENOTFOUND.
	RevokeAPIKey(ctx context.Context, id string, now time.Time) error
	// APIKeys lists a tenant's keys ("" for all), oldest first.
	APIKeys(ctx context.Context, tenantID string) ([]*APIKey, error)

	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's connections.
	Close() error
}
