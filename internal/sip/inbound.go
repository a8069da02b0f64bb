package sip

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/media"
)

// codecs are the audio codecs Switchback answers with, in its preference
// when it makes the offer.
var codecs = []media.Codec{media.PCMU, media.PCMA}

// onInvite takes a new call, or a re-INVITE within one.
func (e *Edge) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if !validate(req, tx) {
		return
	}
	if to := req.To(); to != nil && to.Params.Has("tag") {
		e.onReinvite(req, tx)
		return
	}
	// Shed load before doing any work: past the limit of INVITEs in
	// progress, each new one costs one response (RFC 3261 §21.5.4).
	if n := e.pending.Add(1); n > e.maxPending {
		e.pending.Add(-1)
		e.shed.Add(1)
		respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "1"))
		return
	}
	answered := sync.OnceFunc(func() { e.pending.Add(-1) })
	defer answered()
	respond(tx, req, 100, "Trying")
	ctx := context.Background()

	// Who is calling, and for which transfer.
	var tenant *tenantAccess
	var id, number string
	if t, ok := e.tenantFor(req); ok {
		if e.check(ctx, &t.access, req, tx) != passed {
			return
		}
		var err error
		if id, err = transferID(req); err != nil {
			e.refuse(tx, req, err)
			return
		}
		if id == "" {
			respond(tx, req, 400, "Missing "+TransferIDHeader)
			return
		}
		tenant = t
	} else if number = dialledNumber(req); number != "" {
		if e.trunkFor(ctx, req, tx) != passed {
			return
		}
		// The transfer holding the number names the tenant, whose limits
		// apply before the transfer is used up.
		k, err := e.svc.NumberHolder(ctx, number)
		if err != nil {
			e.refuse(tx, req, err)
			return
		}
		id = k.ID
		tenant = e.tenantsByID[k.TenantID]
		if tenant == nil {
			// A tenant no longer configured: no limits to apply.
			tenant = &tenantAccess{id: k.TenantID, maxCalls: math.MaxInt64}
		}
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
	if st := sessionTimer(req); st.interval > 0 && st.interval < minSE {
		respond(tx, req, 422, "Session Interval Too Small", sip.NewHeader("Min-SE", strconv.Itoa(int(minSE/time.Second))))
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
		select {
		case <-cancelled:
			return
		case <-tx.Done():
			return
		case <-time.After(d):
		}
	}

	if n := tenant.calls.Add(1); n > tenant.maxCalls {
		tenant.calls.Add(-1)
		respond(tx, req, 486, "Busy Here", sip.NewHeader("Retry-After", "5"))
		return
	}
	release := func() { tenant.calls.Add(-1) }

	// The media ports come before the match, so running out of them
	// refuses the call without using up its transfer.
	sess, err := media.ListenRTP(e.bind, e.ports)
	if err != nil {
		release()
		e.log.Warn("no RTP ports free; refusing the call", "err", err)
		respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "5"))
		return
	}

	// A CANCEL that came while we checked leaves the transfer ACTIVE.
	select {
	case <-tx.Done():
		sess.Close()
		release()
		return
	default:
	}
	t, err := e.svc.Match(ctx, tenant.id, id)
	if err != nil {
		sess.Close()
		release()
		e.refuse(tx, req, err)
		return
	}
	log := e.log.With("tenant", t.TenantID, "transfer", t.ID, "call_id", req.CallID().Value())
	c, err := e.answer(req, tx, t, sess, offer, params, log)
	if err != nil {
		release()
		log.Warn("answer failed; the transfer ends as a caller disconnect", "err", err)
		e.completeDisconnected(t, log)
		return
	}
	answered()
	e.running.Add(1)
	e.nCalls.Add(1)
	defer func() {
		e.calls.Delete(c.dialog.ID)
		c.media.Close()
		release()
		e.nCalls.Add(-1)
		e.running.Done()
	}()
	c.run()
}

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

// answer sets up the media and sends the 200 OK, and returns once the
// caller has acknowledged it.
func (e *Edge) answer(req *sip.Request, tx sip.ServerTransaction, t *switchback.Transfer, sess *media.Session, offer *media.Offer, params media.Params, log loggerLike) (*call, error) {
	sess.InactivityTimeout = e.cfg.RTPTimeout.Duration()
	origin := media.NewOrigin()
	var desc media.Description
	advertised := netip.AddrPortFrom(e.host, sess.LocalAddr().Port())
	if offer != nil {
		desc = params.AnswerDescription(advertised, offer)
	} else {
		desc = media.OfferDescription(advertised, codecs)
	}
	body, err := media.BuildSDP(origin, desc)
	if err != nil {
		sess.Close()
		respond(tx, req, 500, "Server Internal Error")
		return nil, err
	}
	dialog, err := e.dialogUA.ReadInvite(req, tx)
	if err != nil {
		sess.Close()
		respond(tx, req, 400, "Bad Request")
		return nil, err
	}
	c := newCall(e, t, dialog, sess, origin, offer == nil, log)
	c.timer = sessionTimer(req)
	e.calls.Store(dialog.ID, c)
	if offer != nil {
		c.lastDesc = desc
		if err := c.startOrUpdate(params); err != nil {
			e.calls.Delete(dialog.ID)
			sess.Close()
			respond(tx, req, 500, "Server Internal Error")
			return nil, err
		}
	}
	res := sip.NewSDPResponseFromRequest(dialog.InviteRequest, body)
	res.AppendHeader(sip.NewHeader("Allow", allowed))
	res.AppendHeader(sip.NewHeader("Supported", "timer"))
	if c.timer.interval > 0 {
		res.AppendHeader(sip.NewHeader("Session-Expires", c.timer.header()))
		res.AppendHeader(sip.NewHeader("Require", "timer"))
	}
	if err := dialog.WriteResponse(res); err != nil {
		e.calls.Delete(dialog.ID)
		sess.Close()
		return nil, err
	}
	if dialog.LoadState() == sip.DialogStateEnded {
		e.calls.Delete(dialog.ID)
		sess.Close()
		return nil, errors.New("the caller went away before acknowledging the answer")
	}
	return c, nil
}

// completeDisconnected completes a matched transfer whose call never got
// going, as the caller hanging up.
func (e *Edge) completeDisconnected(t *switchback.Transfer, log loggerLike) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.svc.Complete(ctx, t.TenantID, t.ID, &switchback.OutputContext{TransferType: switchback.TransferCallerDisconnect}); err != nil {
		log.Error("complete transfer", "err", err)
	}
}

// onAck confirms a dialog; an ACK may carry the answer to our late offer.
func (e *Edge) onAck(req *sip.Request, tx sip.ServerTransaction) {
	c := e.callOf(req)
	if c == nil {
		return // perhaps a return leg's, for our answer to its re-INVITE
	}
	c.dialog.ReadAck(req, tx)
	if len(req.Body()) > 0 {
		c.answerInAck(req.Body())
	}
}

// onBye is the caller hanging up.
func (e *Edge) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if !validate(req, tx) {
		return
	}
	c := e.callOf(req)
	if c == nil && e.fromReturnLeg(req, tx) {
		return
	}
	if c == nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	if err := c.dialog.ReadBye(req, tx); err != nil {
		respond(tx, req, 400, "Bad Request")
		return
	}
	c.hangup("caller")
}

// onInfo takes DTMF sent as SIP INFO.
func (e *Edge) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	if !validate(req, tx) {
		return
	}
	c := e.callOf(req)
	if c == nil && e.fromReturnLeg(req, tx) {
		return
	}
	if c == nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	if d, ok := media.ParseInfoDTMF(ct, req.Body()); ok {
		respond(tx, req, 200, "OK")
		if leg := c.returnLeg.Load(); leg != nil {
			// Bridged: the digit is the return leg's to hear.
			c.journal.record(switchback.EventDigit, map[string]string{"digit": string(d), "leg": "caller"})
			leg.sendInfoDigit(d)
			return
		}
		c.media.InfoDigit(d)
		return
	}
	respond(tx, req, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/dtmf-relay, application/dtmf"))
}

// onUpdate refreshes the session, and may change the media (RFC 3311).
func (e *Edge) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	if !validate(req, tx) {
		return
	}
	c := e.callOf(req)
	if c == nil && e.fromReturnLeg(req, tx) {
		return
	}
	if c == nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	c.modify(req, tx)
}

func (e *Edge) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	c := e.callOf(req)
	if c == nil && e.fromReturnLeg(req, tx) {
		return
	}
	if c == nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	c.modify(req, tx)
}

// callOf finds the call an in-dialog request from a caller belongs to.
func (e *Edge) callOf(req *sip.Request) *call {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return nil
	}
	if v, ok := e.calls.Load(id); ok {
		if c, ok := v.(*call); ok {
			return c
		}
	}
	return nil
}

// fromReturnLeg hands an in-dialog request from a return leg to it, and
// reports whether it was one.
func (e *Edge) fromReturnLeg(req *sip.Request, tx sip.ServerTransaction) bool {
	l := e.returnLegOf(req)
	if l == nil {
		return false
	}
	l.onRequest(req, tx)
	return true
}
