package switchback

import (
	"encoding/json"
	"time"
)

// Conversation is everything a tenant's caller went through under one
// externalConversationId: its legs (one transfer each, oldest first), the
// agent's state as the last leg left it, and a log of what happened.
// A new transfer with the same externalConversationId resumes it.
type Conversation struct {
	TenantID   string
	ExternalID string
	Legs       []*Transfer // oldest first
	// State is the agent's own state, opaque to everything but the agent;
	// nil until an agent has saved one.
	State     json.RawMessage
	Events    []ConversationEvent // in the order they happened
	CreatedAt time.Time           // the first leg's creation, or the first record
	UpdatedAt time.Time           // the last record
}

// ConversationEvent is one thing that happened in a conversation.
type ConversationEvent struct {
	At         time.Time
	TransferID string            // the leg it happened on
	Type       EventType         //
	Data       map[string]string // what the type calls for; may be nil
}

// EventType names a kind of conversation event.
type EventType string

// The conversation events Switchback records.
const (
	EventCallStarted EventType = "call.started" // a call matched the leg; data: from, transport
	EventPrompt      EventType = "prompt"       // the agent played a prompt; data: name
	EventDigit       EventType = "digit"        // a DTMF digit; data: digit, leg ("caller" or "return")
	EventVariable    EventType = "variable"     // the agent collected a variable; data: name, value
	EventOutcome     EventType = "outcome"      // the agent's output context; data: transferType, currentTaskName
	EventHandBack    EventType = "handback"     // the call was handed back; data: method, sipStatus, notifyStatus, fallback, reason
	EventBridged     EventType = "bridged"      // an INVITE return answered; data: codec
	EventHold        EventType = "hold"         // a leg put the call on hold; data: leg
	EventUnhold      EventType = "unhold"       // a leg took the call off hold; data: leg
	EventCallEnded   EventType = "call.ended"   // the call ended; data: by
	EventTranscript  EventType = "transcript"   // what was said, as an agent heard or spoke it; data: role, text, final
	// EventAgentFallback: the call's agent could not take it (unreachable,
	// handshake refused, too slow) or keep it (the connection dropped, or
	// closed without a hand-back), and its fallback took over; data:
	// reason, fallback.
	EventAgentFallback EventType = "agent.fallback"
)

// MaxEventsPerRecord bounds the events one RecordConversation may add, so
// a misbehaving caller cannot grow a conversation without limit in one go.
const MaxEventsPerRecord = 1000

// ConversationRecord is what a leg adds to its conversation: events, and
// the agent's new state when it changed.
type ConversationRecord struct {
	TenantID   string
	ExternalID string
	State      json.RawMessage // nil: leave the stored state as it is
	Events     []ConversationEvent
}

// ReturnResult is how handing a call back went, recorded on the transfer
// after the output context (DESIGN.md invariant 3: the output context is
// stored first; this never delays it).
type ReturnResult struct {
	// Method is the hand-back tried first: BYE, REFER or INVITE.
	Method ReturnTransferType
	// SIPStatus is the final response to the REFER or the return INVITE; 0
	// for BYE or when none came.
	SIPStatus int
	// NotifyStatus is the final status the REFER's NOTIFY sipfrag reported;
	// 0 when none came.
	NotifyStatus int
	// Fallback is set when the method failed and the call was ended by BYE.
	Fallback bool
	// Reason says why in a few words when Fallback is set (or the caller
	// hung up before the hand-back finished).
	Reason string
	At     time.Time
}

// CallEnd is what a call leaves in the store as it ends, written in one
// transaction: its completion, how the hand-back went, and what it adds to
// its conversation. A call writes it once when it can (a BYE hand-back,
// the caller hanging up), or twice (a REFER or INVITE hand-back: the
// completion first, the result once known).
type CallEnd struct {
	TenantID string
	ID       string
	// Output, when set, moves the transfer ONGOING→COMPLETED with it, as
	// CompleteTransfer does; else the transfer must be COMPLETED already.
	Output *OutputContext
	// Result, when set, is recorded as SetReturnResult does.
	Result *ReturnResult
	// Record, when set, is added to its conversation as RecordConversation
	// does.
	Record *ConversationRecord
}

// Validate checks a record before a store takes it: a tenant and an
// external id, at most MaxEventsPerRecord events each with a type, and a
// state that is JSON. Errors are EINVALID.
func (r *ConversationRecord) Validate() error {
	if r.TenantID == "" || r.ExternalID == "" {
		return Errorf(EINVALID, "a conversation record needs a tenant and an externalConversationId")
	}
	if len(r.Events) > MaxEventsPerRecord {
		return FieldErrorf("events", "has %d events; at most %d may be recorded at once", len(r.Events), MaxEventsPerRecord)
	}
	for i, e := range r.Events {
		if e.Type == "" {
			return FieldErrorf("events", "event %d has no type", i)
		}
	}
	if r.State != nil && !json.Valid(r.State) {
		return FieldErrorf("state", "is not valid JSON")
	}
	return nil
}

// LiveLegError is the ECONFLICT refusing a second live leg of a
// conversation: a match, or a new transfer, while transferID is ONGOING.
func LiveLegError(externalID, transferID string) *Error {
	return Errorf(ECONFLICT, "conversation %q already has a call in progress (transfer %q)", externalID, transferID)
}
