// Package call is Switchback's call runtime. It owns each live call from
// the moment it is matched to its transfer to its end: the call's
// goroutines (started and awaited here), its agent, what it adds to its
// conversation, the choice and order of its hand-back (the output context
// stored first, then the signal: DESIGN.md invariant 3), and every store
// write it makes. It drives the call's legs through the Leg interface,
// which the SIP edge implements; it knows nothing of SIP.
//
// A node drains (Drain) by letting its calls run to their normal end while
// the edge refuses new ones, and stops (Stop) by ending every call at once,
// each outcome stored before its leg is hung up.
package call

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/switchback/switchback"
)

// Transfers is the part of the transfer service a call writes through.
type Transfers interface {
	Match(ctx context.Context, tenantID, id string) (*switchback.Transfer, error)
	EndCall(ctx context.Context, e *switchback.CallEnd) (*switchback.Transfer, error)
	Conversation(ctx context.Context, tenantID, externalID string) (*switchback.Conversation, error)
	RecordConversation(ctx context.Context, r *switchback.ConversationRecord) error
}

// Options are what a Runtime is built from.
type Options struct {
	Transfers Transfers
	Agents    switchback.AgentFactory
	Log       *slog.Logger
	// Clock is the runtime's time; nil means the wall clock.
	Clock Clock
	// Retry is how a call's store writes are retried; the zero value
	// means DefaultRetry.
	Retry Retry
}

// Runtime runs a node's live calls.
type Runtime struct {
	transfers Transfers
	agents    switchback.AgentFactory
	log       *slog.Logger
	clock     Clock
	retry     Retry

	mu       sync.Mutex
	calls    map[*Call]struct{}
	pending  int // calls in Admit or being answered: not yet started or abandoned
	draining bool
	stopped  bool
	idle     chan struct{} // closed when draining with no call left
	ended    map[string]uint64
	handed   map[HandBackKind]uint64
	wg       sync.WaitGroup // admitted calls, the calls' goroutines, and background writes
	quit     chan struct{}  // closed by Stop: background writes give up
}

// New returns a Runtime.
func New(o Options) *Runtime {
	r := &Runtime{transfers: o.Transfers, agents: o.Agents, log: o.Log, clock: o.Clock, retry: o.Retry,
		calls: map[*Call]struct{}{}, ended: map[string]uint64{}, handed: map[HandBackKind]uint64{}, quit: make(chan struct{})}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.clock == nil {
		r.clock = wallClock{}
	}
	if r.retry.Attempts == 0 {
		r.retry = DefaultRetry
	}
	return r
}

// ErrDraining is what Admit returns once the node drains or stops: the
// edge refuses the call so that it goes to another node.
var ErrDraining = switchback.Errorf(switchback.EUNAVAILABLE, "this node is draining and takes no new calls")

// Arrival is a call the edge has authenticated and is about to answer.
type Arrival struct {
	// TenantID and TransferID name the call's transfer (the edge finds a
	// PSTN transfer's by the number dialled).
	TenantID   string
	TransferID string
	// CallID, From and To are the caller leg's; Transport and Source say
	// how it came, for the conversation's log.
	CallID, From, To  string
	Transport, Source string
}

// Admit matches an arriving call to its transfer, reads the conversation
// it continues and makes its agent, which may connect within ctx. The
// call is then the caller's to answer: Start it once answered, or Abandon
// it. When Admit fails nothing is left to undo; its error is a domain
// error the edge answers with.
//
// From its match on, the call counts as in progress: a drain waits for it
// (an agent may take seconds to connect while the caller hears ringing,
// and the transfer is already ONGOING), and a stop cuts its agent's
// connecting short and waits for it to be started or abandoned, so that
// its outcome is stored.
func (r *Runtime) Admit(ctx context.Context, a Arrival) (*Call, error) {
	if !r.admitting() {
		return nil, ErrDraining
	}
	admitted := false
	defer func() {
		if !admitted {
			r.settle()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	t, err := r.transfers.Match(ctx, a.TenantID, a.TransferID)
	if err != nil {
		return nil, err
	}
	c := newCall(r, t, a)
	c.info.Conversation = c.loadConversation(ctx)
	agent, err := r.agents.NewAgent(ctx, c.info)
	if err != nil {
		// Answered all the same: the call goes back at once rather than
		// being refused with its transfer used up.
		c.log.Error("no agent for the call; it will be handed back", "err", err)
		agent = nil
		c.agentErr = err
	}
	c.agent = agent
	admitted = true
	return c, nil
}

// admitting counts a call being admitted, so that a drain waits for it
// and a stop for its end; false once the runtime drains or stopped.
func (r *Runtime) admitting() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return false
	}
	r.pending++
	r.wg.Add(1)
	return true
}

// settle forgets a call admitted but not started: refused by Admit,
// abandoned, or refused its start by a stop.
func (r *Runtime) settle() {
	r.mu.Lock()
	r.pending--
	r.idleIfDone()
	r.mu.Unlock()
	r.wg.Done()
}

// idleIfDone closes idle when a draining runtime holds no call, admitted
// or started. r.mu is held.
func (r *Runtime) idleIfDone() {
	if !r.draining || len(r.calls) > 0 || r.pending > 0 {
		return
	}
	select {
	case <-r.idle:
	default:
		close(r.idle)
	}
}

// Draining reports whether the node takes no new calls.
func (r *Runtime) Draining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.draining
}

// Active returns how many calls the runtime holds: answered, or in Admit
// or being answered.
func (r *Runtime) Active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls) + r.pending
}

// Ended returns how many calls ended, by how they ended: "handback" (the
// agent handed the call back), "caller" (the caller hung up under the
// agent), "rtp-timeout", "session-timer", "shutdown", "unanswered".
func (r *Runtime) Ended() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.ended))
	for k, v := range r.ended {
		out[k] = v
	}
	return out
}

// HandBackKind is one way a call was handed back: its method, and whether
// that method failed and the call was ended by BYE instead.
type HandBackKind struct {
	Method   switchback.ReturnTransferType
	Fallback bool
}

// HandBacks returns how many calls were handed back, by method and
// fallback, as their returnResult says.
func (r *Runtime) HandBacks() map[HandBackKind]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[HandBackKind]uint64, len(r.handed))
	for k, v := range r.handed {
		out[k] = v
	}
	return out
}

// handedBack counts a hand-back.
func (r *Runtime) handedBack(res *switchback.ReturnResult) {
	r.mu.Lock()
	r.handed[HandBackKind{Method: res.Method, Fallback: res.Fallback}]++
	r.mu.Unlock()
}

// Drain makes the runtime refuse new calls (Admit fails with ErrDraining)
// while the calls in progress go on to their normal end. It returns a
// channel closed once none is left.
func (r *Runtime) Drain() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.draining {
		r.draining = true
		r.idle = make(chan struct{})
		r.idleIfDone()
	}
	return r.idle
}

// Stop ends every call at once, as if its caller had hung up (each
// outcome is stored, with the agent's last state, before its leg is hung
// up), and returns once every call and background write is done. The
// runtime takes no call after it.
func (r *Runtime) Stop() {
	r.mu.Lock()
	r.draining = true
	if r.idle == nil {
		r.idle = make(chan struct{})
		r.idleIfDone()
	}
	if !r.stopped {
		r.stopped = true
		close(r.quit)
	}
	calls := make([]*Call, 0, len(r.calls))
	for c := range r.calls {
		calls = append(calls, c)
	}
	r.mu.Unlock()
	for _, c := range calls {
		c.stop(switchback.ErrShutdown)
	}
	r.wg.Wait()
}

// add registers an admitted call that is starting, which takes over its
// admission's count; false once the runtime stopped.
func (r *Runtime) add(c *Call) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false
	}
	r.pending--
	r.calls[c] = struct{}{}
	return true
}

// done unregisters a call that ended, and how.
func (r *Runtime) done(c *Call, how string) {
	r.mu.Lock()
	delete(r.calls, c)
	r.ended[how]++
	r.idleIfDone()
	r.mu.Unlock()
	r.wg.Done()
}

// errNoAgent hands a call back when it has no agent.
var errNoAgent = errors.New("no agent for the call")
