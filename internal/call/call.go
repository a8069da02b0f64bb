package call

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchback/switchback"
)

const (
	// audioQueue is how many 20 ms frames an agent may fall behind
	// (320 ms) before frames are dropped.
	audioQueue = 16
	// digitQueue is how many digits wait for the agent.
	digitQueue = 32
	// agentStopWait is how long a call whose caller hung up waits for its
	// agent to stop, so the state the agent saves as it stops goes into
	// the call's last write.
	agentStopWait = time.Second
	// agentLeakWait is how much longer the call waits for an agent that
	// ignores its context before it gives up on it (and logs it).
	agentLeakWait = 10 * time.Second
	// finishAudioWait bounds how long queued audio may play out before a
	// hand-back that asked for it.
	finishAudioWait = time.Minute
	// signalTimeout bounds a BYE.
	signalTimeout = 10 * time.Second
)

// Call is one live call in the runtime, from Admit to its end.
type Call struct {
	r       *Runtime
	t       *switchback.Transfer
	info    *switchback.CallInfo
	arrival Arrival
	log     *slog.Logger

	agent    switchback.Agent
	agentErr error // why there is no agent

	journal journal
	frames  chan switchback.AudioFrame
	digits  chan switchback.Digit
	dropped struct{ digits atomic.Uint64 }
	bridged atomic.Bool // Play and friends fail with ErrBridged

	mu        sync.Mutex
	cancel    context.CancelCauseFunc // set while the call runs
	stopCause error                   // a stop that came before it ran
}

func newCall(r *Runtime, t *switchback.Transfer, a Arrival) *Call {
	input := t.InputContext
	if input == nil {
		input = &switchback.InputContext{}
	}
	c := &Call{r: r, t: t, arrival: a,
		log:    r.log.With("tenant", t.TenantID, "transfer", t.ID, "call_id", a.CallID),
		frames: make(chan switchback.AudioFrame, audioQueue),
		digits: make(chan switchback.Digit, digitQueue),
		info: &switchback.CallInfo{TenantID: t.TenantID, TransferID: t.ID, ExternalConversationID: t.ExternalConversationID,
			Type: t.Type, Input: input, Return: returnMethod(t), CallID: a.CallID, From: a.From, To: a.To},
	}
	c.journal = journal{tenantID: t.TenantID, externalID: t.ExternalConversationID, transferID: t.ID, now: r.clock.Now}
	return c
}

// Transfer returns the transfer the call matched, as it was matched.
func (c *Call) Transfer() *switchback.Transfer { return c.t }

// Frames implements Reporter.
func (c *Call) Frames() chan<- switchback.AudioFrame { return c.frames }

// Digit implements Reporter: the digit is logged in the conversation and
// given to the agent.
func (c *Call) Digit(d switchback.Digit) {
	c.journal.record(switchback.EventDigit, map[string]string{"digit": string(d.Digit), "leg": string(d.Leg)})
	select {
	case c.digits <- d:
	default:
		c.dropped.digits.Add(1)
	}
}

// Record implements Reporter.
func (c *Call) Record(t switchback.EventType, data map[string]string) { c.journal.record(t, data) }

// Start runs the answered call on leg until it ends. The call belongs to
// the runtime from here: Start returns at once. Until Start or Abandon, an
// admitted call keeps a drain waiting.
func (c *Call) Start(leg Leg) {
	if !c.r.add(c) {
		// The node stopped while the call was being answered.
		c.stopCause = switchback.ErrShutdown
		c.endUnanswered("shutdown")
		c.bye(leg)
		leg.Close()
		c.r.settle()
		return
	}
	go c.run(leg)
}

// Abandon ends a call that could not be answered (the caller left first,
// or the answer could not be sent): its transfer completes as a caller
// disconnect.
func (c *Call) Abandon(why string) {
	c.log.Info("the call was not answered; its transfer ends as a caller disconnect", "why", why)
	c.endUnanswered("unanswered")
	c.r.settle()
}

func (c *Call) endUnanswered(how string) {
	c.journal.record(switchback.EventCallEnded, map[string]string{"by": how})
	c.write(&switchback.CallEnd{Output: &switchback.OutputContext{TransferType: switchback.TransferCallerDisconnect},
		Record: c.journal.take()})
	c.closeAgent()
	c.r.mu.Lock()
	c.r.ended[how]++
	c.r.mu.Unlock()
}

// stop ends the call under its agent.
func (c *Call) stop(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel(cause)
	} else if c.stopCause == nil {
		c.stopCause = cause
	}
}

func (c *Call) setCancel(cancel context.CancelCauseFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancel = cancel
	if c.stopCause != nil {
		cancel(c.stopCause)
	}
}

// run is the call's life: the agent talks until it hands the call back or
// the call ends under it.
func (c *Call) run(leg Leg) {
	how := "handback"
	defer func() {
		leg.Close()
		c.closeAgent()
		if n := c.dropped.digits.Load(); n > 0 {
			c.log.Warn("digits dropped: the agent did not read them in time", "count", n)
		}
		c.r.done(c, how)
	}()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	c.setCancel(cancel)
	c.journal.record(switchback.EventCallStarted, map[string]string{"from": c.arrival.Source, "transport": c.arrival.Transport})
	ac := &agentCall{c: c, leg: leg}

	if c.agent == nil {
		err := fmt.Errorf("%w: %v", errNoAgent, c.agentErr)
		how = c.handBack(ctx, leg, ac, failed(c.t), err.Error())
		return
	}
	var hb *switchback.HandBack
	var agentErr error
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		hb, agentErr = runAgent(ctx, c.agent, ac)
	}()
	select {
	case <-agentDone:
	case <-leg.Ended():
		cancel(switchback.ErrCallerHungUp)
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		c.waitAgent(agentDone, agentStopWait)
		how = c.endUnderAgent(ctx, leg)
		c.waitAgent(agentDone, agentLeakWait)
		return
	}
	if agentErr == nil {
		agentErr = validHandBack(hb)
	}
	if agentErr != nil {
		select {
		case <-leg.Ended():
			// The agent failed because the caller went.
			cancel(switchback.ErrCallerHungUp)
			how = c.endUnderAgent(ctx, leg)
			return
		default:
		}
		c.log.Error("the agent failed; handing the call back", "err", agentErr)
		how = c.handBack(ctx, leg, ac, failed(c.t), agentErr.Error())
		return
	}
	how = c.handBack(ctx, leg, ac, hb, "")
}

// waitAgent waits up to d for the agent's goroutine to end.
func (c *Call) waitAgent(done <-chan struct{}, d time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	ch, stop := c.r.clock.After(d)
	defer stop()
	select {
	case <-done:
	case <-ch:
		if d == agentLeakWait {
			c.log.Error("the agent did not stop with its call", "waited", (agentStopWait + agentLeakWait).String())
		}
	}
}

// runAgent runs the agent, turning a panic into an error.
func runAgent(ctx context.Context, a switchback.Agent, call switchback.Call) (hb *switchback.HandBack, err error) {
	defer func() {
		if p := recover(); p != nil {
			hb, err = nil, fmt.Errorf("the agent panicked: %v", p)
		}
	}()
	return a.Run(ctx, call)
}

// validHandBack checks what an agent returned.
func validHandBack(hb *switchback.HandBack) error {
	if hb == nil {
		return errors.New("the agent returned no hand-back and no error")
	}
	if hb.Output == nil {
		return errors.New("the agent handed back no output context")
	}
	switch hb.Output.TransferType {
	case switchback.TransferAgent, switchback.TransferSystem:
	default:
		return fmt.Errorf("the agent handed back with transferType %q, not AGENT or SYSTEM", hb.Output.TransferType)
	}
	return nil
}

// failed is the hand-back of a call whose agent failed: SYSTEM, in the
// task it came for.
func failed(t *switchback.Transfer) *switchback.HandBack {
	task := ""
	if t.InputContext != nil {
		task = t.InputContext.TaskName
	}
	return &switchback.HandBack{Output: &switchback.OutputContext{TransferType: switchback.TransferSystem, CurrentTaskName: task}}
}

// endUnderAgent completes the transfer of a call that ended under its
// agent as the caller hanging up first: no variables (the spec's
// CALLER_DISCONNECT), the agent's last state kept. It returns how the
// call ended.
func (c *Call) endUnderAgent(ctx context.Context, leg Leg) string {
	by := leg.EndedBy()
	if errors.Is(context.Cause(ctx), switchback.ErrShutdown) {
		by = "shutdown"
	} else if by == "" {
		by = "caller"
	}
	c.journal.record(switchback.EventCallEnded, map[string]string{"by": by})
	c.writeLast(&switchback.CallEnd{Output: &switchback.OutputContext{TransferType: switchback.TransferCallerDisconnect},
		Record: c.journal.take()})
	if by != "caller" {
		c.bye(leg)
	}
	c.log.Info("call ended under the agent", "by", by)
	return by
}

func (c *Call) bye(leg Leg) {
	ctx, cancel := context.WithTimeout(context.Background(), signalTimeout)
	defer cancel()
	if err := leg.Bye(ctx); err != nil {
		c.log.Warn("BYE", "err", err)
	}
}

func (c *Call) closeAgent() {
	if cl, ok := c.agent.(io.Closer); ok {
		if err := cl.Close(); err != nil {
			c.log.Warn("close the agent", "err", err)
		}
	}
}

// returnMethod is how a transfer's call goes back: REFER or INVITE as a
// SIP transfer with a return URI asks, else BYE (always for PHONE_NUMBER).
func returnMethod(t *switchback.Transfer) switchback.ReturnTransferType {
	if t.Type != switchback.TypeSIP || t.SIP == nil || t.SIP.ReturnURI == "" {
		return switchback.ReturnBYE
	}
	switch m := t.SIP.ReturnTransferType; m {
	case switchback.ReturnREFER, switchback.ReturnINVITE:
		return m
	}
	return switchback.ReturnBYE
}

// handBackData is a hand-back's result as a conversation event's data.
func handBackData(r *switchback.ReturnResult) map[string]string {
	d := map[string]string{"method": string(r.Method), "fallback": strconv.FormatBool(r.Fallback)}
	if r.SIPStatus != 0 {
		d["sipStatus"] = strconv.Itoa(r.SIPStatus)
	}
	if r.NotifyStatus != 0 {
		d["notifyStatus"] = strconv.Itoa(r.NotifyStatus)
	}
	if r.Reason != "" {
		d["reason"] = r.Reason
	}
	return d
}
