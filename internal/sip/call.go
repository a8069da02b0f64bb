package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/media"
)

// loggerLike is the part of *slog.Logger a call uses.
type loggerLike interface {
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
}

// call is one answered call: its dialog, its media, and the agent on it.
type call struct {
	e         *Edge
	t         *switchback.Transfer
	dialog    *sipgo.DialogServerSession
	media     *media.Session
	origin    *media.Origin
	lateOffer bool
	log       loggerLike
	timer     timerState

	mu           sync.Mutex
	lastDesc     media.Description
	params       media.Params // the caller leg's, as last negotiated
	mediaStarted bool
	bridged      *returnLeg    // the return leg once an INVITE hand-back answers
	hungup       chan struct{} // closed when the caller is gone
	hangupBy     string
	once         sync.Once
	refreshed    chan struct{}    // a session refresh arrived
	notifies     chan referNotify // the NOTIFYs of our REFER
	stopping     chan struct{}    // the edge shuts down
	stopOnce     sync.Once

	returnLeg atomic.Pointer[returnLeg] // set while bridged to an INVITE hand-back's leg
	infoMu    sync.Mutex                // orders the INFOs passed on to the caller

	conv    *switchback.Conversation // what the call continues; nil on a first call
	journal journal                  // what it adds to its conversation
}

func newCall(e *Edge, t *switchback.Transfer, d *sipgo.DialogServerSession, m *media.Session, o *media.Origin, lateOffer bool, log loggerLike) *call {
	c := &call{e: e, t: t, dialog: d, media: m, origin: o, lateOffer: lateOffer, log: log,
		hungup: make(chan struct{}), refreshed: make(chan struct{}, 1), stopping: make(chan struct{}),
		notifies: make(chan referNotify, 8)}
	c.journal.c = c
	return c
}

// timerState is a call's RFC 4028 session timer: the caller refreshes the
// session every interval, or the call is considered gone.
type timerState struct {
	interval time.Duration // 0: no session timer
	// weRefresh is set when the caller asked us to refresh (refresher=uas):
	// we send an UPDATE every half interval, else the caller must refresh.
	weRefresh bool
}

// header is the Session-Expires value of our responses.
func (t timerState) header() string {
	refresher := "uac"
	if t.weRefresh {
		refresher = "uas"
	}
	return strconv.Itoa(int(t.interval/time.Second)) + ";refresher=" + refresher
}

// minSE is the smallest session interval accepted (RFC 4028 §4).
const minSE = 90 * time.Second

// sessionTimer reads the session interval a request asks for.
func sessionTimer(req *sip.Request) timerState {
	h := req.GetHeader("Session-Expires")
	if h == nil {
		h = req.GetHeader("x") // compact form of Session-Expires
	}
	if h == nil {
		return timerState{}
	}
	v, params, _ := strings.Cut(h.Value(), ";")
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs <= 0 {
		return timerState{}
	}
	st := timerState{interval: time.Duration(secs) * time.Second}
	for _, p := range strings.Split(params, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") && strings.EqualFold(strings.TrimSpace(val), "uas") {
			st.weRefresh = true
		}
	}
	return st
}

// hangup records that the call is gone, and who ended it.
func (c *call) hangup(by string) {
	c.once.Do(func() {
		c.hangupBy = by
		close(c.hungup)
	})
}

// shutdown ends the call because the edge is stopping.
func (c *call) shutdown() { c.stopOnce.Do(func() { close(c.stopping) }) }

// run drives the call from the ACK to its end: the agent talks, and the call
// is handed back by its outcome, or ends with the caller.
func (c *call) run() {
	c.conv = c.loadConversation()
	c.journal.record(switchback.EventCallStarted, map[string]string{
		"from": c.dialog.InviteRequest.Source(), "transport": c.dialog.InviteRequest.Transport()})
	agent, err := c.e.agents.NewAgent(c.t.TenantID, c.t.InputContext, c.conv)
	if err != nil {
		c.log.Error("no agent for the call; handing it back", "err", err)
		c.handBack(&switchback.OutputContext{TransferType: switchback.TransferSystem, CurrentTaskName: taskOf(c.t)})
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan *switchback.OutputContext, 1)
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		out, err := agent.Run(ctx, &agentCall{c})
		if err != nil || out == nil {
			if !isClosed(c.hungup) {
				c.log.Error("the agent failed; handing the call back", "err", err)
			}
			out = nil
		}
		result <- out
	}()
	// endByCaller stops the agent, and waits a moment for it so the state
	// it saves as it stops goes in the transfer's last write.
	endByCaller := func() {
		cancel()
		select {
		case <-agentDone:
		case <-time.After(200 * time.Millisecond):
		}
		c.endByCaller()
	}

	var expiry <-chan time.Time
	var expiryTimer *time.Timer
	var refresh <-chan time.Time
	if c.timer.interval > 0 && c.timer.weRefresh {
		t := time.NewTicker(c.timer.interval / 2)
		defer t.Stop()
		refresh = t.C
	} else if c.timer.interval > 0 {
		expiryTimer = time.NewTimer(refreshDeadline(c.timer.interval))
		defer expiryTimer.Stop()
		expiry = expiryTimer.C
	}
	for {
		select {
		case out := <-result:
			if out == nil && isClosed(c.hungup) {
				// The agent stopped because the caller went.
				c.endByCaller()
				return
			}
			if out == nil {
				// The agent failed with the caller still on the line: the
				// call goes back rather than sit in silence.
				out = &switchback.OutputContext{TransferType: switchback.TransferSystem, CurrentTaskName: taskOf(c.t)}
			}
			c.handBack(out)
			return
		case <-c.hungup:
			endByCaller()
			return
		case <-c.media.Inactive():
			c.log.Info("no RTP from the caller; ending the call", "timeout", c.e.cfg.RTPTimeout.Duration().String())
			c.hangup("rtp-timeout")
			endByCaller()
			c.bye()
			return
		case <-expiry:
			c.log.Info("session timer expired without a refresh; ending the call")
			c.hangup("session-timer")
			endByCaller()
			c.bye()
			return
		case <-c.refreshed:
			if expiryTimer != nil {
				expiryTimer.Reset(refreshDeadline(c.timer.interval))
			}
		case <-refresh:
			if err := c.sendRefresh(); err != nil {
				c.log.Info("session refresh failed; ending the call", "err", err)
				c.hangup("session-timer")
				endByCaller()
				c.bye()
				return
			}
		case <-c.stopping:
			c.log.Warn("shutting down: ending the call as a caller disconnect")
			c.hangup("shutdown")
			endByCaller()
			c.bye()
			return
		}
	}
}

// sendRefresh refreshes the session with an UPDATE without SDP (RFC 4028
// §7.4 and RFC 3311), as the refresher the caller made us.
func (c *call) sendRefresh() error {
	contact := c.dialog.InviteRequest.Contact()
	if contact == nil {
		return errors.New("the caller gave no Contact")
	}
	req := sip.NewRequest(sip.UPDATE, contact.Address)
	req.AppendHeader(sip.NewHeader("Session-Expires", c.timer.header()))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	res, err := c.dialog.Do(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("UPDATE answered %d", res.StatusCode)
	}
	return nil
}

// refreshDeadline is when a session whose refresher is the caller is
// considered gone: the interval less min(32 s, a third of it) (RFC 4028 §10).
func refreshDeadline(interval time.Duration) time.Duration {
	return interval - min(32*time.Second, interval/3)
}

func taskOf(t *switchback.Transfer) string {
	if t.InputContext != nil {
		return t.InputContext.TaskName
	}
	return ""
}

// endByCaller completes the transfer as the caller hanging up first: no
// variables (the spec's CALLER_DISCONNECT). The conversation's record goes
// in the same write: its next call may come as soon as this one is
// complete.
func (c *call) endByCaller() {
	c.journal.record(switchback.EventCallEnded, map[string]string{"by": c.hangupBy})
	c.end(&switchback.CallEnd{Output: &switchback.OutputContext{TransferType: switchback.TransferCallerDisconnect},
		Record: c.journal.take()})
	c.log.Info("call ended by the caller", "by", c.hangupBy)
}

// handBack stores the agent's outcome and then hands the call back as the
// transfer asks: a client that fetches the transfer the moment the call
// comes back finds it COMPLETED (DESIGN.md invariant 3), and how the
// hand-back went too, since that is recorded before Switchback's BYE.
//
// A BYE hand-back is one write: outcome, result and the conversation's
// record together. A REFER or INVITE hand-back writes the outcome first,
// and the result once the REFER or the return leg has answered.
func (c *call) handBack(out *switchback.OutputContext) {
	c.journal.record(switchback.EventOutcome, map[string]string{
		"transferType": string(out.TransferType), "currentTaskName": out.CurrentTaskName})
	method := c.returnMethod()
	if method == switchback.ReturnBYE {
		r := &switchback.ReturnResult{Method: switchback.ReturnBYE, At: time.Now()}
		c.journal.record(switchback.EventHandBack, handBackData(r))
		c.journal.record(switchback.EventCallEnded, map[string]string{"by": "switchback"})
		if !c.end(&switchback.CallEnd{Output: out, Result: r, Record: c.journal.take()}) {
			// Storing failed: the caller is still handed back, or the
			// line would stay up with nobody on it.
			c.log.Error("handing back without a stored output context")
		}
		c.bye()
		c.log.Info("call handed back", "method", "BYE", "transfer_type", string(out.TransferType))
		return
	}

	completed := c.end(&switchback.CallEnd{Output: out, Record: c.journal.take()})
	if !completed {
		c.log.Error("handing back without a stored output context; trying again with the result")
	}
	var r switchback.ReturnResult
	var bye bool
	var leg *returnLeg
	if method == switchback.ReturnREFER {
		r, bye = c.referBack()
	} else {
		r, leg = c.inviteBack()
		bye = leg == nil && !isClosed(c.hungup)
	}
	r.At = time.Now()
	c.journal.record(switchback.EventHandBack, handBackData(&r))
	if leg == nil && !bye {
		c.journal.record(switchback.EventCallEnded, map[string]string{"by": c.hangupBy})
	} else if leg == nil {
		c.journal.record(switchback.EventCallEnded, map[string]string{"by": "switchback"})
	}
	// The result is recorded before the BYE, so a client that fetches the
	// transfer when its call returns finds it too.
	last := &switchback.CallEnd{Result: &r, Record: c.journal.take()}
	if !completed {
		last.Output = out
	}
	c.end(last)
	if bye {
		c.bye()
	}
	c.log.Info("call handed back", "method", string(r.Method), "transfer_type", string(out.TransferType),
		"sip_status", r.SIPStatus, "notify_status", r.NotifyStatus, "fallback", r.Fallback, "reason", r.Reason)
	if leg != nil {
		c.bridge(leg)
	}
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

// returnMethod is how the call goes back: REFER or INVITE as a SIP
// transfer with a return URI asks, else BYE (always for PHONE_NUMBER).
func (c *call) returnMethod() switchback.ReturnTransferType {
	if c.t.Type != switchback.TypeSIP || c.t.SIP == nil || c.t.SIP.ReturnURI == "" {
		return switchback.ReturnBYE
	}
	switch m := c.t.SIP.ReturnTransferType; m {
	case switchback.ReturnREFER, switchback.ReturnINVITE:
		return m
	}
	return switchback.ReturnBYE
}

// end writes what the call leaves in the store (see switchback.CallEnd),
// retrying briefly if the store hiccups.
func (c *call) end(e *switchback.CallEnd) bool {
	e.TenantID, e.ID = c.t.TenantID, c.t.ID
	for attempt := 0; attempt < 5; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.e.svc.EndCall(ctx, e)
		cancel()
		if err == nil {
			return true
		}
		if code := switchback.ErrorCode(err); code == switchback.EGONE || code == switchback.ENOTFOUND || code == switchback.EINVALID {
			c.log.Error("store the end of the call", "err", err)
			return false
		}
		c.log.Warn("store the end of the call; retrying", "err", err)
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	return false
}

// bye hangs up our side of the call, unless the caller already did.
func (c *call) bye() {
	select {
	case <-c.hungup:
		if c.hangupBy == "caller" {
			return
		}
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.dialog.Bye(ctx); err != nil {
		c.log.Warn("BYE", "err", err)
	}
	c.hangup("switchback")
}

// modify handles a re-INVITE or UPDATE: a session refresh, and perhaps new
// media (hold, unhold, another address or codec).
func (c *call) modify(req *sip.Request, tx sip.ServerTransaction) {
	select {
	case c.refreshed <- struct{}{}:
	default:
	}
	var body []byte
	if len(req.Body()) > 0 {
		offer, err := media.ParseOffer(req.Body())
		if err != nil {
			respond(tx, req, 488, "Not Acceptable Here")
			return
		}
		params, err := media.Negotiate(offer, codecs)
		if err != nil {
			respond(tx, req, 488, "Not Acceptable Here")
			return
		}
		prev := c.currentParams().Direction
		if err := c.startOrUpdate(params); err != nil {
			respond(tx, req, 500, "Server Internal Error")
			return
		}
		c.recordHold("caller", prev, params.Direction)
		desc := params.AnswerDescription(c.advertised(), offer)
		c.mu.Lock()
		body, err = media.BuildSDP(c.origin, desc)
		c.lastDesc = desc
		c.mu.Unlock()
		if err != nil {
			respond(tx, req, 500, "Server Internal Error")
			return
		}
	} else if req.Method == sip.INVITE {
		// A re-INVITE without SDP asks us to offer (RFC 3261 §14.2); the
		// answer comes in the ACK.
		c.mu.Lock()
		desc := c.lastDesc
		if !desc.Addr.IsValid() {
			desc = media.OfferDescription(c.advertised(), codecs)
		}
		desc.Offer = nil
		var err error
		body, err = media.BuildSDP(c.origin, desc)
		c.mu.Unlock()
		if err != nil {
			respond(tx, req, 500, "Server Internal Error")
			return
		}
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.AppendHeader(&c.e.dialogUA.ContactHDR)
	if c.timer.interval > 0 {
		res.AppendHeader(sip.NewHeader("Session-Expires", c.timer.header()))
		res.AppendHeader(sip.NewHeader("Require", "timer"))
	}
	tx.Respond(res)
}

// answerInAck applies the answer to an offer Switchback made in its 200.
func (c *call) answerInAck(body []byte) {
	answer, err := media.ParseOffer(body)
	if err != nil {
		c.log.Warn("unreadable SDP in ACK", "err", err)
		return
	}
	params, err := media.Negotiate(answer, codecs)
	if err != nil {
		c.log.Warn("no common codec in the ACK's answer", "err", err)
		return
	}
	if err := c.startOrUpdate(params); err != nil {
		c.log.Warn("start media", "err", err)
	}
}

// startOrUpdate starts the media with the first negotiated parameters (a
// late offer's answer), and updates it with later ones.
func (c *call) startOrUpdate(p media.Params) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.params = p
	if c.mediaStarted {
		c.media.Update(p)
		return nil
	}
	if err := c.media.Start(p); err != nil {
		return err
	}
	c.mediaStarted = true
	return nil
}

// currentParams is the caller leg's media as last negotiated.
func (c *call) currentParams() media.Params {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.params
}

// advertised is where the call's SDP says its media goes.
func (c *call) advertised() netip.AddrPort {
	return netip.AddrPortFrom(c.e.host, c.media.LocalAddr().Port())
}

// agentCall is the call as its Agent sees it.
type agentCall struct{ c *call }

var _ switchback.Call = (*agentCall)(nil)

func (a *agentCall) Input() *switchback.InputContext {
	if a.c.t.InputContext == nil {
		return &switchback.InputContext{}
	}
	return a.c.t.InputContext
}
func (a *agentCall) TransferID() string { return a.c.t.ID }
func (a *agentCall) Play(ctx context.Context, pcm []int16) error {
	return a.c.media.Play(ctx, pcm)
}
func (a *agentCall) Digits() <-chan rune     { return a.c.media.Digits() }
func (a *agentCall) Audio() <-chan []int16   { return a.c.media.Audio() }
func (a *agentCall) Hangup() <-chan struct{} { return a.c.hungup }
