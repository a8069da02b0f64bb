package switchback

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Agent talks to a caller on a live call. The call runtime makes one Agent
// per matched call (see AgentFactory), runs it, and hands the call back as
// its HandBack says; the Agent never touches SIP or RTP.
//
// An Agent may also implement Follower, to keep listening after an INVITE
// hand-back, and io.Closer: Close is called once the call has ended,
// whatever happened, after Run and Follow have returned (a WebSocket agent
// sends its stop message and closes its connection there).
type Agent interface {
	// Run converses on call until the agent decides the call goes back:
	// it returns how. When the call ends under it (the caller hung up,
	// the node stops) ctx is cancelled, context.Cause(ctx) says why (one
	// of the ErrCall... errors), and what Run returns is ignored: the
	// transfer completes as CALLER_DISCONNECT with the last state the
	// agent saved. An error (or a panic) with the caller still on the
	// line hands the call back as SYSTEM, the error recorded as the reason.
	Run(ctx context.Context, call Call) (*HandBack, error)
}

// Follower is an Agent that stays on a call it handed back by INVITE:
// Switchback keeps the caller and the return leg bridged, and the agent
// keeps hearing both (the guides' "continue to transcribe the call until
// the call is ended").
type Follower interface {
	// Follow runs once the return leg has answered and is bridged to the
	// caller, until the call ends (ctx is cancelled). Audio and Digits now
	// carry both legs, tagged LegCaller and LegReturn; Play, Enqueue and
	// Mark fail with ErrBridged. Events it Records and state it saves are
	// added to the conversation when the call ends.
	Follow(ctx context.Context, call Call) error
}

// HandBack is how an agent hands a call back.
type HandBack struct {
	// Output is the output context stored on the transfer before the call
	// goes back (DESIGN.md invariant 3). Its TransferType is AGENT or
	// SYSTEM.
	Output *OutputContext
	// State, when not nil, is saved for the conversation's next leg, as
	// Call.SaveState does.
	State json.RawMessage
	// FinishAudio lets the audio queued for the caller play out before
	// the call is handed back; otherwise it is dropped at once.
	FinishAudio bool
}

// The causes a call's context is cancelled with when the call ends under
// its agent (see Agent.Run).
var (
	// ErrCallerHungUp: the caller hung up, or its media or session timer
	// showed it gone.
	ErrCallerHungUp = errors.New("the caller hung up")
	// ErrCallEnded: the call ended after its hand-back (the bridged legs
	// hung up).
	ErrCallEnded = errors.New("the call ended")
	// ErrShutdown: the node stopped before the call could end normally.
	ErrShutdown = errors.New("switchback is shutting down")
)

// Errors of a Call's playout.
var (
	// ErrPlayoutFull: the audio queued for the caller reached its bound;
	// what did not fit was dropped (and counted).
	ErrPlayoutFull = errors.New("playout queue full")
	// ErrBridged: the caller is bridged to the return leg and hears it,
	// not the agent.
	ErrBridged = errors.New("the call is bridged to the return leg")
	// ErrCallOver: the call has ended.
	ErrCallOver = errors.New("the call is over")
)

// Leg names one side of a call Switchback is in the middle of.
type Leg string

// The legs of a call.
const (
	// LegCaller is the transferred caller.
	LegCaller Leg = "caller"
	// LegReturn is the call an INVITE hand-back placed to the returnURI.
	LegReturn Leg = "return"
)

// AudioFrame is 20 ms of one leg's audio: 160 samples of 8 kHz mono
// 16-bit linear PCM.
type AudioFrame struct {
	Leg Leg
	// PCM belongs to whoever receives the frame: nothing writes to it
	// after it is delivered.
	PCM []int16
	// At is when the frame's audio arrived.
	At time.Time
}

// Digit is a DTMF digit one leg sent, as an RFC 4733 event or a SIP INFO;
// each press comes once.
type Digit struct {
	Leg   Leg
	Digit rune // 0-9, *, #, A-D
	At    time.Time
}

// CallInfo is what an agent is told about the call it takes.
type CallInfo struct {
	TenantID               string
	TransferID             string
	ExternalConversationID string
	Type                   Type
	// Input is the transfer's input context, never nil.
	Input *InputContext
	// Return is how the call goes back: BYE, REFER or INVITE.
	Return ReturnTransferType
	// CallID is the caller leg's SIP Call-ID.
	CallID string
	// From and To are the caller leg's From and To URIs.
	From, To string
	// Conversation is the conversation this call continues (DESIGN.md
	// invariant 7): its earlier legs, the state the agent saved on them
	// and what happened. It is nil on a conversation's first call.
	Conversation *Conversation
}

// Call is what an Agent sees of a live call.
type Call interface {
	// Info describes the call; it does not change.
	Info() *CallInfo

	// Audio delivers the caller's audio as 20 ms frames, and while an
	// INVITE hand-back is bridged the return leg's too (see Follower).
	// Frames not read in time are dropped and counted, not queued
	// without bound.
	Audio() <-chan AudioFrame
	// Digits delivers the DTMF digits of the caller (and, bridged, of
	// the return leg), each press once.
	Digits() <-chan Digit

	// Play queues pcm (8 kHz mono 16-bit linear PCM) for the caller and
	// returns once it has been sent, or when ctx ends (what is left of it
	// is then dropped).
	Play(ctx context.Context, pcm []int16) error
	// Enqueue queues pcm for the caller without waiting: the queue plays
	// out paced at 20 ms a frame, so an agent may send audio ahead of
	// real time. The queue is bounded: what does not fit is dropped and
	// ErrPlayoutFull returned.
	Enqueue(pcm []int16) error
	// Mark queues a named point in the audio: once everything queued
	// before it has been sent, its name is delivered on Marks.
	Mark(name string) error
	// Marks delivers the names of the marks reached, in order.
	Marks() <-chan string
	// Clear drops all queued audio at once (barge-in); the marks still
	// pending are delivered on Marks, in order.
	Clear()

	// SaveState keeps the agent's state for the conversation's next call;
	// the last state saved is stored before the call is handed back, or
	// when the caller hangs up. It must be a JSON value.
	SaveState(state json.RawMessage)
	// Record adds an event to the conversation's log (prompts played,
	// digits, variables collected, transcripts).
	Record(t EventType, data map[string]string)
}

// AgentFactory makes the agent that takes a matched call. It is called
// before the call is answered: an agent that has to connect somewhere
// does so within ctx, so a caller is never answered into silence.
type AgentFactory interface {
	NewAgent(ctx context.Context, info *CallInfo) (Agent, error)
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
