package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/media"
)

// returnLeg is the call Switchback places to the returnURI when a transfer
// goes back by INVITE: Switchback stays in the middle, relaying the media
// between it and the caller.
type returnLeg struct {
	c      *call
	key    string // the dialog id its in-dialog requests carry, as we see them
	dialog *sipgo.DialogClientSession
	media  *media.Session
	origin *media.Origin
	br     *media.Bridge // relays between the caller and this leg

	mu        sync.Mutex
	lastDesc  media.Description
	curParams media.Params

	hungup chan struct{} // closed when the return leg is gone
	once   sync.Once
	by     string
	infoMu sync.Mutex // orders the INFOs sent to it
}

func (l *returnLeg) hangup(by string) {
	l.once.Do(func() {
		l.by = by
		close(l.hungup)
	})
}

// noURIHeaders are the headers a returnURI may not set on the INVITE: they
// belong to the transaction and dialog Switchback builds (RFC 3261 §19.1.5
// leaves which to honour to the UA).
var noURIHeaders = map[string]bool{
	"call-id": true, "cseq": true, "via": true, "from": true, "to": true, "contact": true,
	"content-length": true, "content-type": true, "content-encoding": true, "max-forwards": true,
	"record-route": true, "route": true, "body": true, "authorization": true, "proxy-authorization": true,
	// and their compact forms (RFC 3261 §7.3.3)
	"i": true, "v": true, "f": true, "t": true, "m": true, "l": true, "c": true, "e": true,
}

// isToken reports whether s is an RFC 3261 token, as a header name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// splitReturnURI separates a returnURI's headers (after '?') from the
// Request-URI, which keeps every byte before the '?', URI parameters
// included (RFC 3261 §19.1.5). Header values are unescaped.
func splitReturnURI(uri string) (requestURI string, headers []sip.Header, err error) {
	requestURI, query, hasQuery := strings.Cut(uri, "?")
	if !hasQuery {
		return requestURI, nil, nil
	}
	for _, part := range strings.Split(query, "&") {
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		name, err1 := url.PathUnescape(name)
		value, err2 := url.PathUnescape(value)
		if err := errors.Join(err1, err2); err != nil || !isToken(name) || strings.ContainsAny(value, "\r\n\x00") {
			return "", nil, fmt.Errorf("URI header %q is not valid", part)
		}
		if noURIHeaders[strings.ToLower(name)] {
			continue
		}
		headers = append(headers, sip.NewHeader(name, value))
	}
	return requestURI, headers, nil
}

// requestURIOf builds the sip.Uri that writes out as requestURI byte for
// byte: the parsed host and port route the request, and the user part and
// parameters are kept as the customer wrote them. It also returns the
// transport the URI asks for, if any.
func requestURIOf(requestURI string) (u sip.Uri, transport string, err error) {
	if err := sip.ParseUri(requestURI, &u); err != nil {
		return u, "", err
	}
	transport, _ = u.UriParams.Get("transport")
	colon := strings.IndexByte(requestURI, ':')
	u.Scheme = requestURI[:colon] // as written: "SIP:" stays "SIP:"
	if transport == "" && strings.EqualFold(u.Scheme, "sips") {
		transport = "tls"
	}
	rest := requestURI[colon+1:]
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		u.User, u.Password = rest[:at], ""
		rest = rest[at+1:]
	}
	if semi := strings.IndexByte(rest, ';'); semi >= 0 {
		// One valueless parameter holding all of them writes them back
		// unchanged.
		u.UriParams = sip.HeaderParams{{K: rest[semi+1:]}}
	}
	u.Headers = nil
	if got := u.String(); got != requestURI {
		return u, "", fmt.Errorf("the Request-URI would be sent as %q, not %q", got, requestURI)
	}
	return u, transport, nil
}

// inviteBack places the return call and, once it answers, bridges it to
// the caller. It returns how that went, and the leg when it is up.
func (c *call) inviteBack() (switchback.ReturnResult, *returnLeg) {
	r := switchback.ReturnResult{Method: switchback.ReturnINVITE}
	fail := func(reason string) (switchback.ReturnResult, *returnLeg) {
		r.Fallback, r.Reason = true, reason
		c.log.Warn("INVITE hand-back failed; ending the call by BYE", "reason", reason)
		return r, nil
	}
	if isClosed(c.hungup) {
		r.Reason = "the caller hung up before the return INVITE"
		return r, nil
	}
	requestURI, headers, err := splitReturnURI(c.t.SIP.ReturnURI)
	if err != nil {
		return fail(err.Error())
	}
	target, transport, err := requestURIOf(requestURI)
	if err != nil {
		return fail(err.Error())
	}

	sess, err := media.ListenRTP(c.e.bind, c.e.ports)
	if err != nil {
		return fail("no RTP ports free for the return leg")
	}
	leg := &returnLeg{c: c, media: sess, origin: media.NewOrigin(), hungup: make(chan struct{})}
	sess.InactivityTimeout = c.e.cfg.RTPTimeout.Duration()
	offer := media.OfferDescription(netip.AddrPortFrom(c.e.host, sess.LocalAddr().Port()), c.returnCodecs())
	body, err := media.BuildSDP(leg.origin, offer)
	if err != nil {
		sess.Close()
		return fail("build the return leg's SDP")
	}
	leg.lastDesc = offer

	req := sip.NewRequest(sip.INVITE, target)
	req.SetBody(body)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	from := sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: c.tenantUser(), Host: c.e.host.String(), Port: int(c.e.Addr().Port())},
		Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&from)
	req.AppendHeader(&sip.ToHeader{Address: target, Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("Allow", allowed))
	for _, h := range headers {
		req.AppendHeader(h)
	}
	if transport != "" {
		req.SetTransport(strings.ToUpper(transport))
	}

	ctx, cancel := context.WithTimeout(context.Background(), c.e.cfg.ReturnTimeout.Duration())
	defer cancel()
	go func() {
		select {
		case <-c.hungup: // the caller left while the return leg rang
			cancel()
		case <-c.stopping: // Switchback shuts down: CANCEL, fall back to BYE
			cancel()
		case <-ctx.Done():
		}
	}()
	dialog, err := c.e.dialogUA.WriteInvite(ctx, req)
	if err != nil {
		sess.Close()
		return fail("send the return INVITE: " + err.Error())
	}
	user, pass := c.returnCredentials()
	err = dialog.WaitAnswer(ctx, sipgo.AnswerOptions{Username: user, Password: pass})
	if err != nil {
		sess.Close()
		// A 200 that crossed our CANCEL leaves the return leg answered:
		// it is ACKed and hung up, not left in dead air.
		if res := dialog.InviteResponse; res != nil && res.IsSuccess() {
			if id, err := sip.DialogIDFromResponse(res); err == nil {
				dialog.ID = id
			}
			ackCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
			if err := dialog.Ack(ackCtx); err == nil {
				dialog.Bye(ackCtx)
			}
			done()
		}
		dialog.Close()
		var dr *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &dr):
			r.SIPStatus = dr.Res.StatusCode
			return fail("the return leg answered " + strconv.Itoa(dr.Res.StatusCode))
		case isClosed(c.hungup):
			r.Reason = "the caller hung up before the return leg answered"
			return r, nil
		case isClosed(c.stopping):
			return fail("Switchback shut down while the return leg rang")
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fail("the return leg did not answer within " + c.e.cfg.ReturnTimeout.Duration().String())
		default:
			return fail("the return INVITE failed: " + err.Error())
		}
	}
	r.SIPStatus = dialog.InviteResponse.StatusCode
	leg.dialog = dialog
	// The media is up and bridged before the ACK: what the return leg
	// sends once it has the ACK (a digit, say) goes through.
	ack := func() {
		if err := dialog.Ack(context.Background()); err != nil {
			c.log.Warn("ACK to the return leg", "err", err)
		}
	}
	answer, err := media.ParseOffer(dialog.InviteResponse.Body())
	var params media.Params
	if err == nil {
		params, err = media.Negotiate(answer, codecs)
	}
	if err == nil {
		err = sess.Start(params)
	}
	leg.mu.Lock()
	leg.curParams = params
	leg.mu.Unlock()
	if err != nil {
		ack()
		sess.Close()
		byeCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
		dialog.Bye(byeCtx)
		done()
		return fail("the return leg's answer has no usable audio")
	}
	leg.key = sip.DialogIDMake(req.CallID().Value(), tagOf(dialog.InviteRequest.From().Params), tagOf(dialog.InviteResponse.To().Params))
	c.e.calls.Store(leg.key, leg)
	// Bridge at once: what either side sends from now on goes through.
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Second)
	leg.br, err = media.NewBridge(bctx, c.media, sess)
	bcancel()
	if err == nil {
		c.returnLeg.Store(leg) // the caller's INFO digits go to it from now on
	}
	ack()
	if err != nil {
		c.e.calls.Delete(leg.key)
		sess.Close()
		byeCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
		dialog.Bye(byeCtx)
		done()
		return fail("bridge the return leg: " + err.Error())
	}
	return r, leg
}

func tagOf(p sip.HeaderParams) string {
	t, _ := p.Get("tag")
	return t
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// returnCodecs offers the caller's codec first, so the legs match and no
// transcoding is needed when the return leg takes it.
func (c *call) returnCodecs() []media.Codec {
	if c.currentParams().Codec == media.PCMA {
		return []media.Codec{media.PCMA, media.PCMU}
	}
	return []media.Codec{media.PCMU, media.PCMA}
}

// returnCredentials answer the return leg's digest challenge: the
// transfer's own, else the tenant's (tenants[].sip.returnAuth).
func (c *call) returnCredentials() (user, pass string) {
	if c.t.SIP != nil && c.t.SIP.ReturnAuthPassword != "" {
		return c.t.SIP.ReturnAuthUsername, c.t.SIP.ReturnAuthPassword
	}
	if t := c.e.tenantsByID[c.t.TenantID]; t != nil {
		return t.returnAuth.Username, t.returnAuth.Password
	}
	return "", ""
}

func (c *call) tenantUser() string {
	if t := c.e.tenantsByID[c.t.TenantID]; t != nil && t.user != "" {
		return t.user
	}
	return c.t.TenantID
}

// bridge relays the media between the caller and the answered return leg
// until either hangs up, then hangs up the other. The conversation keeps
// the call's events meanwhile: digits from both legs, hold, who hung up.
func (c *call) bridge(leg *returnLeg) {
	defer func() {
		c.e.calls.Delete(leg.key)
		leg.media.Close()
	}()
	br := leg.br
	defer c.returnLeg.Store(nil)
	c.journal.record(switchback.EventBridged, map[string]string{
		"callerCodec": c.currentParams().Codec.String(), "returnCodec": leg.params().Codec.String()})
	c.log.Info("return leg answered; bridging", "return_call_id", leg.dialog.InviteRequest.CallID().Value())
	digitsDone := make(chan struct{})
	go func() {
		defer close(digitsDone)
		for d := range br.Digits() {
			name := "caller"
			if d.Leg == 1 {
				name = "return"
			}
			c.journal.record(switchback.EventDigit, map[string]string{"digit": string(d.Digit), "leg": name})
		}
	}()

	// The caller's session timer runs on while bridged (RFC 4028): we
	// refresh when the caller made us the refresher, else we expect its
	// refreshes.
	var refresh, expiry <-chan time.Time
	var expiryTimer *time.Timer
	if c.timer.interval > 0 && c.timer.weRefresh {
		t := time.NewTicker(c.timer.interval / 2)
		defer t.Stop()
		refresh = t.C
	} else if c.timer.interval > 0 {
		expiryTimer = time.NewTimer(refreshDeadline(c.timer.interval))
		defer expiryTimer.Stop()
		expiry = expiryTimer.C
	}
	by := ""
	for by == "" {
		select {
		case <-c.hungup:
			by = "caller"
			leg.bye()
		case <-leg.hungup:
			by = "return"
			c.bye()
		case <-c.media.Inactive():
			by = "rtp-timeout"
		case <-leg.media.Inactive():
			by = "rtp-timeout"
		case <-c.stopping:
			by = "shutdown"
		case <-c.refreshed:
			if expiryTimer != nil {
				expiryTimer.Reset(refreshDeadline(c.timer.interval))
			}
		case <-refresh:
			if err := c.sendRefresh(); err != nil {
				c.log.Info("session refresh failed; ending the bridged call", "err", err)
				by = "session-timer"
			}
		case <-expiry:
			c.log.Info("session timer expired without a refresh; ending the bridged call")
			by = "session-timer"
		}
	}
	if by != "caller" && by != "return" {
		leg.bye()
		c.hangup(by)
		c.bye()
	}
	br.Stop()
	<-digitsDone
	st := br.Stats()
	// dropped_to_*: packets not sent to a leg on hold (or unreachable).
	c.log.Info("bridged call ended", "by", by, "relayed_to_return", st.Legs[0].Relayed, "relayed_to_caller", st.Legs[1].Relayed,
		"transcoded", st.Legs[0].Transcoded+st.Legs[1].Transcoded,
		"dropped_to_return", st.Legs[0].Dropped, "dropped_to_caller", st.Legs[1].Dropped)
	c.journal.record(switchback.EventCallEnded, map[string]string{"by": by})
	c.journal.flush()
}

func (l *returnLeg) params() media.Params {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.curParams
}

// bye hangs up the return leg, unless it already hung up.
func (l *returnLeg) bye() {
	if isClosed(l.hungup) && l.by == "return" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.dialog.Bye(ctx); err != nil {
		l.c.log.Warn("BYE to the return leg", "err", err)
	}
	l.hangup("switchback")
}

// returnLegOf finds the return leg an in-dialog request comes from.
func (e *Edge) returnLegOf(req *sip.Request) *returnLeg {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return nil
	}
	if v, ok := e.calls.Load(id); ok {
		if l, ok := v.(*returnLeg); ok {
			return l
		}
	}
	return nil
}

// onRequest handles an in-dialog request from the return leg: its BYE, a
// re-INVITE or UPDATE (hold, unhold, refresh), DTMF by INFO (passed on to
// the caller). It reports whether req was the return leg's.
func (l *returnLeg) onRequest(req *sip.Request, tx sip.ServerTransaction) {
	switch req.Method {
	case sip.BYE:
		if err := l.dialog.ReadBye(req, tx); err != nil {
			respond(tx, req, 400, "Bad Request")
			return
		}
		l.hangup("return")
	case sip.INVITE, sip.UPDATE:
		l.modify(req, tx)
	case sip.INFO:
		ct := ""
		if h := req.ContentType(); h != nil {
			ct = h.Value()
		}
		d, ok := media.ParseInfoDTMF(ct, req.Body())
		if !ok {
			respond(tx, req, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/dtmf-relay, application/dtmf"))
			return
		}
		respond(tx, req, 200, "OK")
		l.c.journal.record(switchback.EventDigit, map[string]string{"digit": string(d), "leg": "return"})
		sendInfoDigit(l.c.dialog, &l.c.infoMu, l.c.dialog.InviteRequest.Contact(), d, l.c.log)
	case sip.ACK:
		// The ACK of our answer to its re-INVITE: nothing to do.
	default:
		respond(tx, req, 405, "Method Not Allowed", sip.NewHeader("Allow", allowed))
	}
}

// modify answers the return leg's re-INVITE or UPDATE.
func (l *returnLeg) modify(req *sip.Request, tx sip.ServerTransaction) {
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
		l.media.Update(params)
		desc := params.AnswerDescription(netip.AddrPortFrom(l.c.e.host, l.media.LocalAddr().Port()), offer)
		l.mu.Lock()
		prev := l.curParams.Direction
		l.curParams, l.lastDesc = params, desc
		body, err = media.BuildSDP(l.origin, desc)
		l.mu.Unlock()
		if err != nil {
			respond(tx, req, 500, "Server Internal Error")
			return
		}
		l.c.recordHold("return", prev, params.Direction)
	} else if req.Method == sip.INVITE {
		l.mu.Lock()
		desc := l.lastDesc
		desc.Offer = nil
		var err error
		body, err = media.BuildSDP(l.origin, desc)
		l.mu.Unlock()
		if err != nil {
			respond(tx, req, 500, "Server Internal Error")
			return
		}
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.AppendHeader(&l.c.e.dialogUA.ContactHDR)
	tx.Respond(res)
}

// recordHold logs a leg going on or off hold: our direction stops or
// starts sending when the peer holds (RFC 3264 §8.4).
func (c *call) recordHold(leg string, prev, next media.Direction) {
	switch {
	case prev.Sends() && !next.Sends():
		c.journal.record(switchback.EventHold, map[string]string{"leg": leg})
	case !prev.Sends() && next.Sends() && prev != 0:
		c.journal.record(switchback.EventUnhold, map[string]string{"leg": leg})
	}
}

// sendInfoDigit passes a digit the caller sent by INFO on to the return
// leg the same way.
func (l *returnLeg) sendInfoDigit(d rune) {
	sendInfoDigit(l.dialog, &l.infoMu, l.dialog.InviteResponse.Contact(), d, l.c.log)
}

// inDialog is the part of a sipgo dialog session an INFO goes out on.
type inDialog interface {
	Do(ctx context.Context, req *sip.Request) (*sip.Response, error)
}

// sendInfoDigit sends a DTMF digit by INFO (application/dtmf-relay) within
// a dialog, to its peer's Contact, without waiting for the answer. mu is
// the dialog's: its earlier INFOs go first, so two digits in quick
// succession keep their order and their CSeqs.
func sendInfoDigit(d inDialog, mu *sync.Mutex, contact *sip.ContactHeader, digit rune, log loggerLike) {
	if contact == nil {
		return
	}
	req := sip.NewRequest(sip.INFO, contact.Address)
	req.SetBody([]byte("Signal=" + string(digit) + "\r\nDuration=160\r\n"))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	mu.Lock() // taken here, so the digits queue in the order they came
	go func() {
		defer mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := d.Do(ctx, req); err != nil {
			log.Info("pass a digit on by INFO", "err", err)
		}
	}()
}
