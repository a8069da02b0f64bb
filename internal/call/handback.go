package call

import (
	"context"

	"github.com/switchback/switchback"
)

// handBack stores the agent's outcome and then hands the call back as its
// transfer asks: a client that fetches the transfer the moment the call
// comes back finds it COMPLETED with its output context (DESIGN.md
// invariant 3), and how the hand-back went too, since that is recorded
// before Switchback's BYE.
//
// A BYE hand-back is one write: outcome, result and the conversation's
// record together. A REFER or INVITE hand-back writes the outcome first,
// and the result once the REFER or the return leg has answered. failure,
// when set, says why the agent did not choose the outcome itself.
func (c *Call) handBack(ctx context.Context, leg Leg, ac *agentCall, hb *switchback.HandBack, failure string) string {
	out := hb.Output
	outcome := map[string]string{"transferType": string(out.TransferType), "currentTaskName": out.CurrentTaskName}
	if failure != "" {
		outcome["reason"] = failure
	}
	c.journal.record(switchback.EventOutcome, outcome)
	if hb.State != nil && !c.journal.saveState(hb.State) {
		c.log.Warn("the agent's hand-back state is not JSON; not saved")
	}
	if hb.FinishAudio {
		fctx, cancel := context.WithTimeout(ctx, finishAudioWait)
		leg.Drain(fctx)
		cancel()
	} else {
		leg.Clear()
	}

	method := returnMethod(c.t)
	if method == switchback.ReturnBYE {
		r := &switchback.ReturnResult{Method: switchback.ReturnBYE, At: c.r.clock.Now()}
		c.journal.record(switchback.EventHandBack, handBackData(r))
		by := "switchback"
		select {
		case <-leg.Ended():
			// Gone while the last audio played out.
			by = leg.EndedBy()
		default:
		}
		c.journal.record(switchback.EventCallEnded, map[string]string{"by": by})
		c.writeLast(&switchback.CallEnd{Output: out, Result: r, Record: c.journal.take()})
		c.r.handedBack(r)
		if by != "caller" {
			c.bye(leg)
		}
		c.log.Info("call handed back", "method", "BYE", "transfer_type", string(out.TransferType))
		return "handback"
	}

	first := &switchback.CallEnd{Output: out, Record: c.journal.take()}
	var last switchback.CallEnd
	if c.write(first) != nil {
		// The next write carries the outcome again.
		last.Output = out
		c.journal.giveBack(first.Record)
	}
	var r switchback.ReturnResult
	var br Bridge
	if method == switchback.ReturnREFER {
		r = leg.Refer(ctx, c.t)
	} else {
		_, follows := c.agent.(switchback.Follower)
		br, r = leg.Invite(ctx, c.t, follows)
	}
	r.At = c.r.clock.Now()
	c.journal.record(switchback.EventHandBack, handBackData(&r))
	bye := false
	if br == nil {
		by := "switchback"
		select {
		case <-leg.Ended():
			// Gone without a BYE of its own (its RTP or session timer
			// lapsed): the BYE is still Switchback's to send.
			by = leg.EndedBy()
			bye = by != "caller"
		default:
			bye = true
		}
		c.journal.record(switchback.EventCallEnded, map[string]string{"by": by})
	}
	last.Result, last.Record = &r, c.journal.take()
	c.writeLast(&last)
	c.r.handedBack(&r)
	if bye {
		c.bye(leg)
	}
	c.log.Info("call handed back", "method", string(r.Method), "transfer_type", string(out.TransferType),
		"sip_status", r.SIPStatus, "notify_status", r.NotifyStatus, "fallback", r.Fallback, "reason", r.Reason)
	if br != nil {
		c.follow(ctx, ac, br)
	}
	return "handback"
}

// follow keeps the call while the caller is bridged to the return leg,
// with the agent listening if it follows, until either leg hangs up or
// the node stops.
func (c *Call) follow(ctx context.Context, ac *agentCall, br Bridge) {
	c.bridged.Store(true)
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	if f, ok := c.agent.(switchback.Follower); ok {
		go func() {
			defer close(done)
			defer func() {
				if p := recover(); p != nil {
					c.log.Error("the agent panicked while following the call", "panic", p)
				}
			}()
			if err := f.Follow(fctx, ac); err != nil && fctx.Err() == nil {
				c.log.Warn("the agent stopped following the call", "err", err)
			}
		}()
	} else {
		close(done)
	}
	var by string
	select {
	case <-br.Ended():
		by = br.EndedBy()
	case <-ctx.Done():
		by = "shutdown"
		hctx, hcancel := context.WithTimeout(context.Background(), signalTimeout)
		br.Hangup(hctx)
		hcancel()
	}
	cancel(switchback.ErrCallEnded)
	c.waitAgent(done, agentStopWait)
	c.waitAgent(done, agentLeakWait)
	br.Close()
	c.journal.record(switchback.EventCallEnded, map[string]string{"by": by})
	c.flushJournal()
}
