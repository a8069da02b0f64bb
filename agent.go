package switchback

import (
	"context"
	"encoding/json"
	"time"
)

// Agent talks to a caller on a live call. The call runtime runs one Agent
// per matched call and hands the call back as the Agent's output context
// says; the Agent never touches SIP.
type Agent interface {
	// Run converses on call until it decides the call goes back (it returns
	// the output context) or the call ends under it (ctx is cancelled and
	// call.Hangup is closed; what it returns then is ignored, the transfer
	// completes as CALLER_DISCONNECT).
	Run(ctx context.Context, call Call) (*OutputContext, error)
}

// Call is what an Agent sees of a live call.
type Call interface {
	// Input is the transfer's input context, never nil.
	Input() *InputContext
	// TransferID names the transfer this call matched, for logs.
	TransferID() string
	// Play sends audio to the caller and returns once it has been sent, or
	// when ctx ends. The audio is 8 kHz mono 16-bit linear PCM.
	Play(ctx context.Context, pcm []int16) error
	// Digits delivers the caller's DTMF digits (0-9, *, #, A-D), whether
	// sent as RFC 4733 events or SIP INFO, each once.
	Digits() <-chan rune
	// Audio delivers the caller's audio as 20 ms frames of 8 kHz 16-bit
	// linear PCM. Frames the agent does not read in time are dropped, not
	// queued without bound.
	Audio() <-chan []int16
	// Hangup is closed when the caller has hung up or the call was lost.
	Hangup() <-chan struct{}
	// Conversation is the conversation this call continues (DESIGN.md
	// invariant 7): its earlier legs, the state the agent saved on them
	// and what happened. It is nil on a conversation's first call.
	Conversation() *Conversation
	// SaveState keeps the agent's state for the conversation's next call;
	// the last state saved is stored before the call is handed back, or
	// when the caller hangs up. It must be a JSON value.
	SaveState(state json.RawMessage)
	// Record adds an event to the conversation's log (prompts played,
	// digits, variables collected).
	Record(t EventType, data map[string]string)
}

// AgentFactory makes the agent for a matched call from its tenant and task,
// and from the conversation it continues (nil on a first call): an agent
// resumes in the task its saved state names.
type AgentFactory interface {
	NewAgent(tenantID string, input *InputContext, conv *Conversation) (Agent, error)
}

// NonceStore backs SIP digest nonces that several nodes must agree on: a
// shared signing key, and single use.
type NonceStore interface {
	// NonceKey returns the key that signs digest nonces, creating it on
	// first use; every node sharing the store gets the same key.
	NonceKey(ctx context.Context) ([]byte, error)
	// ClaimNonce records that nonce has been used and reports whether this
	// was its first use. Records older than their expiry may be forgotten.
	ClaimNonce(ctx context.Context, nonce string, expiresAt, now time.Time) (bool, error)
}
