package sip

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/call"
	"github.com/switchback/switchback/internal/media"
)

// admitTimeout bounds what a new INVITE waits for before it is answered:
// the store's match, the conversation, the agent connecting.
const admitTimeout = 15 * time.Second

// onInvite takes a new call, or a re-INVITE within one. A new call is
// authenticated, matched to its transfer and given to the call runtime
// once answered; this handler returns then, the call goes on without it.
func (e *Edge) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if !validate(req, tx) {
		return
	}
	if to := req.To(); to != nil && to.Params.Has("tag") {
		e.inDialog(req, tx)
		return
	}
	// A draining node sends new calls elsewhere (RFC 3261 §21.5.4).
	if !e.trackInvite() {
		respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", strconv.Itoa(drainRetryAfter)))
		return
	}
	defer e.invites.Done()
	if e.calls.Draining() {
		respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", strconv.Itoa(drainRetryAfter)))
		return
	}
	// Shed load before doing any work: past the limit of INVITEs in
	// progress, each new one costs one response.
	if n := e.pending.Add(1); n > e.maxPending {
		e.pending.Add(-1)
		e.shed.Add(1)
		respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "1"))
		return
	}
	arrived := e.now()
	answered := sync.OnceFunc(func() { e.pending.Add(-1) })
	defer answered()
	respond(tx, req, 100, "Trying")
	ctx, cancel := context.WithTimeout(e.life, admitTimeout)
	defer cancel()

	// Who is calling, and for which transfer.
	arrival := call.Arrival{CallID: callID(req), Transport: req.Transport(), Source: req.Source()}
	if f := req.From(); f != nil {
		arrival.From = f.Address.String()
	}
	if t := req.To(); t != nil {
		arrival.To = t.Address.String()
	}
	if t, ok := e.tenantFor(req); ok {
		if e.check(ctx, &t.access, req, tx) != passed {
			return
		}
		id, err := transferID(req)
		if err != nil {
			e.refuse(tx, req, err)
			return
		}
		if id == "" {
			respond(tx, req, 400, "Missing "+TransferIDHeader)
			return
		}
		arrival.TenantID, arrival.TransferID = t.id, id
	} else if number := dialledNumber(req); number != "" {
		if e.trunkFor(ctx, req, tx) != passed {
			return
		}
		// The transfer holding the number names the tenant, and the call
		// is matched to that transfer like a SIP transfer's: under the
		// tenant's limit of calls across the fleet (tenants[].sip.maxCalls).
		k, err := e.svc.NumberHolder(ctx, number)
		if err != nil {
			e.refuse(tx, req, err)
			return
		}
		arrival.TenantID, arrival.TransferID = k.TenantID, k.ID
	} else {
		respond(tx, req, 404, "Not Found")
		return
	}

	// The media offer, checked before the transfer is used up.
	var offer *media.Offer
	var params media.Params
	if len(req.Body()) > 0 {
		var err error
		if offer, err = media.ParseOffer(req.Body()); err != nil {
			var na *media.NotAcceptableError
			if errors.As(err, &na) {
				respond(tx, req, 488, "Not Acceptable Here")
			} else {
				respond(tx, req, 400, "Bad SDP")
			}
			return
		}
		if params, err = media.Negotiate(offer, codecs); err != nil {
			respond(tx, req, 488, "Not Acceptable Here")
			return
		}
	}

	// RFC 4028 §6: a session interval below our minimum is refused with
	// the minimum we take.
	if st := sessionTimer(req); st.interval > 0 && st.interval < e.minSE {
		respond(tx, req, 422, "Session Interval Too Small", sip.NewHeader("Min-SE", strconv.Itoa(int(e.minSE/time.Second))))
		return
	}

	// Ring first if so configured: a CANCEL while ringing leaves the
	// transfer ACTIVE for the next attempt.
	if d := e.cfg.AnswerDelay.Duration(); d > 0 {
		cancelled := make(chan struct{})
		var once sync.Once
		if !tx.OnCancel(func(*sip.Request) { once.Do(func() { close(cancelled) }) }) {
			return // cancelled already
		}
		respond(tx, req, 180, "Ringing")
		t := time.NewTimer(d)
		select {
		case <-cancelled:
			t.Stop()
			return
		case <-tx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}

	// The tenant's limit of calls is counted in the store, across every
	// node (tenants[].sip.maxCalls): the match refuses a call past it with
	// EBUSY, 486. No count of this node's own stands in front of it, which
	// would refuse calls the fleet still has room for while INVITEs that
	// are about to fail hold its places.

	// The media ports come before the match, so running out of them
	// refuses the call without using up its transfer.
	sess, err := media.ListenRTP(e.bind, e.ports)
	if err != nil {
		e.log.Warn("no RTP ports free; refusing the call", "err", err)
		respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
		return
	}

	// A CANCEL that came while we checked leaves the transfer ACTIVE.
	select {
	case <-tx.Done():
		sess.Close()
		return
	default:
	}
	// A caller whose agent takes a while to connect hears ringing, not
	// dead air (RFC 3261 §13.3.1.1); a quick one gets its 200 at once.
	// (A caller that has rung for sip.answerDelay has had its 180.)
	ringing := func() {}
	if e.cfg.AnswerDelay.Duration() <= 0 {
		ringing = e.ringWhile(tx, req, e.ringAfter)
	}
	c, err := e.calls.Admit(ctx, arrival)
	ringing()
	if err != nil {
		sess.Close()
		e.refuse(tx, req, err)
		return
	}
	l, err := e.answer(req, tx, c, sess, offer, params, arrived)
	if err != nil {
		c.Abandon(err.Error())
		return
	}
	answered()
	c.Start(l)
}

// ringAfter is how long the match and the agent's connecting may take
// before the caller is sent 180 Ringing.
const ringAfter = 250 * time.Millisecond

// ringWhile sends 180 Ringing for req once after d, unless the returned
// function is called first; that function returns only once a 180 under
// way has gone, so no 180 follows the final answer.
func (e *Edge) ringWhile(tx sip.ServerTransaction, req *sip.Request, d time.Duration) func() {
	done := make(chan struct{})
	t := time.AfterFunc(d, func() {
		defer close(done)
		respond(tx, req, 180, "Ringing")
	})
	return func() {
		if !t.Stop() {
			<-done
		}
	}
}

// trackInvite counts a new INVITE in e.invites, unless Serve has stopped
// waiting for them. The lock orders each Add before Serve's Wait.
func (e *Edge) trackInvite() bool {
	e.invitesMu.Lock()
	defer e.invitesMu.Unlock()
	if e.stopping {
		return false
	}
	e.invites.Add(1)
	return true
}

// drainRetryAfter is the Retry-After of a draining node's 503, in seconds.
const drainRetryAfter = 30

// refuse answers an INVITE with the SIP status of a domain error.
func (e *Edge) refuse(tx sip.ServerTransaction, req *sip.Request, err error) {
	s, retry := statusFor(err)
	var hs []sip.Header
	if retry {
		hs = append(hs, sip.NewHeader("Retry-After", "5"))
	}
	if s.code >= 500 {
		e.log.Warn("invite refused", "status", s.code, "err", err)
	}
	respond(tx, req, s.code, s.reason, hs...)
}

// answer makes the caller's leg: it sets up the media, sends the 200 OK
// and returns once the caller has acknowledged it, or hung up having had
// it. arrived is when the INVITE came, for Options.Answered.
func (e *Edge) answer(req *sip.Request, tx sip.ServerTransaction, c *call.Call, sess *media.Session, offer *media.Offer, params media.Params, arrived time.Time) (*leg, error) {
	sess.InactivityTimeout = e.cfg.RTPTimeout.Duration()
	dialog, err := e.dialogUA.ReadInvite(req, tx)
	if err != nil {
		sess.Close()
		respond(tx, req, 400, "Bad Request")
		return nil, err
	}
	t := c.Transfer()
	log := e.log.With("tenant", t.TenantID, "transfer", t.ID, "call_id", callID(req))
	l := newLeg(e, switchback.LegCaller, dialog, sess, media.NewOrigin(), c, log)
	l.key = dialog.ID
	l.transport = req.Transport()
	l.timer = sessionTimer(req)
	if contact := req.Contact(); contact != nil {
		l.target = contact.Address
	}
	fail := func(status int, reason string, err error) (*leg, error) {
		e.dialogs.Delete(l.key)
		if status != 0 {
			respond(tx, req, status, reason)
		}
		l.close()
		return nil, err
	}
	var body []byte
	if offer != nil {
		if _, err := l.apply(params); err != nil {
			return fail(500, "Server Internal Error", err)
		}
		l.lastDesc = params.AnswerDescription(l.advertised(), offer)
	} else {
		// A late offer: Switchback offers in its 200, the answer comes in
		// the ACK.
		l.lastDesc = media.OfferDescription(l.advertised(), codecs)
	}
	if body, err = media.BuildSDP(l.origin, l.lastDesc); err != nil {
		return fail(500, "Server Internal Error", err)
	}
	e.dialogs.Store(l.key, l)
	res := sip.NewSDPResponseFromRequest(dialog.InviteRequest, body)
	res.AppendHeader(e.contactFor(l.transport))
	res.AppendHeader(sip.NewHeader("Allow", allowed))
	res.AppendHeader(sip.NewHeader("Supported", "timer"))
	if l.timer.interval > 0 {
		res.AppendHeader(sip.NewHeader("Session-Expires", l.timer.header(false)))
		res.AppendHeader(sip.NewHeader("Require", "timer"))
	}
	// A node that stops does not wait for the ACK (see Serve).
	stopWaiting := context.AfterFunc(e.life, func() { tx.Terminate() })
	defer stopWaiting()
	// WriteResponse fails when the caller went away before its ACK. But
	// a caller's BYE in this dialog means it had the 200 (sipgo may even
	// read it before the ACK sent ahead of it): the call was answered, and
	// ends under its agent as the caller hanging up.
	if err := dialog.WriteResponse(res); err != nil && !l.byeCame.Load() {
		return fail(0, "", err)
	}
	if e.answered != nil {
		e.answered(e.now().Sub(arrived))
	}
	l.run()
	return l, nil
}

// Close implements call.Leg: the call is over; the leg's media is
// released.
func (l *leg) Close() { l.close() }
