package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/call"
	"github.com/switchback/switchback/internal/media"
)

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

// Invite implements call.Leg: it places the return call of an INVITE
// hand-back and, once it answers, bridges it with the caller, Switchback
// staying in the middle to relay the media. The whole attempt, a digest
// challenge answered on the way, is bounded by sip.returnTimeout.
func (l *leg) Invite(ctx context.Context, t *switchback.Transfer, listen bool) (call.Bridge, switchback.ReturnResult) {
	r := switchback.ReturnResult{Method: switchback.ReturnINVITE}
	fail := func(reason string) (call.Bridge, switchback.ReturnResult) {
		r.Fallback, r.Reason = true, reason
		l.log.Warn("INVITE hand-back failed; the call ends by BYE", "reason", reason)
		return nil, r
	}
	if isClosed(l.ended) {
		r.Reason = l.gone() + " before the return INVITE"
		return nil, r
	}
	requestURI, headers, err := splitReturnURI(t.SIP.ReturnURI)
	if err != nil {
		return fail(err.Error())
	}
	target, transport, err := requestURIOf(requestURI)
	if err != nil {
		return fail(err.Error())
	}
	sess, err := media.ListenRTP(l.e.bind, l.e.ports)
	if err != nil {
		return fail("no RTP ports free for the return leg")
	}
	sess.InactivityTimeout = l.e.cfg.RTPTimeout.Duration()
	origin := media.NewOrigin()
	offer := media.OfferDescription(netip.AddrPortFrom(l.e.host, sess.LocalAddr().Port()), l.returnCodecs())
	body, err := media.BuildSDP(origin, offer)
	if err != nil {
		sess.Close()
		return fail("build the return leg's SDP")
	}

	req := sip.NewRequest(sip.INVITE, target)
	req.SetBody(body)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	from := sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: l.e.tenantUser(t.TenantID), Host: l.e.host.String(), Port: int(l.e.Addr().Port())},
		Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&from)
	req.AppendHeader(&sip.ToHeader{Address: target, Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("Allow", allowed))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	req.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(l.e.cfg.SessionExpires.Duration()/time.Second))))
	req.AppendHeader(sip.NewHeader(TransferIDHeader, t.ID))
	for _, h := range headers {
		req.AppendHeader(h)
	}
	if transport != "" {
		req.SetTransport(strings.ToUpper(transport))
	}
	l.e.bindLocal(req, req.Transport())

	timeout := l.e.cfg.ReturnTimeout.Duration()
	actx, cancel := context.WithTimeout(ctx, timeout)
	// The caller hanging up ends the attempt too: the return leg is not
	// left ringing for someone to answer a call with nobody on it.
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-l.ended:
			cancel()
		case <-actx.Done():
		}
	}()
	defer func() {
		cancel()
		<-watched
	}()
	user, pass := l.e.returnCredentials(t)
	l.e.expectAnswers(actx, target)
	d, err := l.e.placeInvite(actx, req, user, pass)
	if err != nil {
		sess.Close()
		var dr *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &dr):
			r.SIPStatus = dr.Res.StatusCode
			return fail("the return leg answered " + strconv.Itoa(dr.Res.StatusCode))
		case isClosed(l.ended):
			r.Reason = l.gone() + " before the return leg answered"
			return nil, r
		case errors.Is(context.Cause(ctx), switchback.ErrShutdown):
			return fail("Switchback shut down while the return leg rang")
		case errors.Is(actx.Err(), context.DeadlineExceeded):
			return fail("the return leg did not answer within " + timeout.String())
		default:
			return fail("the return INVITE failed: " + err.Error())
		}
	}
	res := d.InviteResponse
	r.SIPStatus = res.StatusCode

	log := l.log.With("return_call_id", d.InviteRequest.CallID().Value())
	ret := newLeg(l.e, switchback.LegReturn, d, sess, origin, l.rep, log)
	ret.transport = d.InviteRequest.Transport()
	ret.target = target
	if c := res.Contact(); c != nil {
		ret.target = c.Address
	}
	ret.lastDesc = offer
	ret.timer = answeredTimer(res)
	ret.key = sip.DialogIDMake(d.InviteRequest.CallID().Value(), tagOf(d.InviteRequest.From().Params), tagOf(res.To().Params))
	ack := func() {
		ackCtx, done := context.WithTimeout(context.Background(), byeTimeout)
		defer done()
		if err := d.Ack(ackCtx); err != nil {
			log.Warn("ACK to the return leg", "err", err)
		}
	}
	hangUp := func() {
		ack()
		byeCtx, done := context.WithTimeout(context.Background(), byeTimeout)
		ret.Bye(byeCtx)
		done()
		ret.close()
	}
	if err := ret.takeAnswer(res.Body()); err != nil {
		hangUp()
		return fail("the return leg's answer has no usable audio")
	}
	l.e.dialogs.Store(ret.key, ret)
	// Bridged before the ACK: what the return leg sends once it has the
	// ACK (a digit, say) goes through.
	bctx, bcancel := context.WithTimeout(ctx, 5*time.Second)
	mb, err := media.NewBridge(bctx, l.media, sess)
	bcancel()
	if err != nil {
		hangUp()
		return fail("bridge the return leg: " + err.Error())
	}
	// An agent that follows the call hears both legs (Follower).
	mb.Listen(listen)
	l.setPeer(ret)
	ret.setPeer(l)
	ack()
	ret.run()
	l.rep.Record(switchback.EventBridged, map[string]string{
		"callerCodec": l.currentParams().Codec.String(), "returnCodec": ret.currentParams().Codec.String()})
	log.Info("return leg answered; bridging")
	return newBridge(l, ret, mb), r
}

// returnCodecs offers the caller's codec first, so the legs match and no
// transcoding is needed when the return leg takes it.
func (l *leg) returnCodecs() []media.Codec {
	if l.currentParams().Codec == media.PCMA {
		return []media.Codec{media.PCMA, media.PCMU}
	}
	return []media.Codec{media.PCMU, media.PCMA}
}

func tagOf(p sip.HeaderParams) string {
	t, _ := p.Get("tag")
	return t
}

// maxChallenges is how many digest challenges one INVITE answers: one,
// and once more when the UAS says the nonce was stale.
const maxChallenges = 2

// placeInvite sends an INVITE and waits, within ctx, for its final answer,
// answering a digest challenge with user and pass (RFC 3261 §22.2). The
// dialog comes back answered, or the error says why not
// (*sipgo.ErrDialogResponse for a final non-2xx).
func (e *Edge) placeInvite(ctx context.Context, req *sip.Request, user, pass string) (*sipgo.DialogClientSession, error) {
	for challenges := 0; ; challenges++ {
		d, err := e.dialogUA.WriteInvite(ctx, req)
		if err != nil {
			return nil, err
		}
		err = e.waitAnswer(ctx, d)
		var dr *sipgo.ErrDialogResponse
		if errors.As(err, &dr) && pass != "" && challenges < maxChallenges {
			if next, ok := authorize(req, dr.Res, user, pass); ok {
				d.Close()
				req = next
				continue
			}
		}
		if err != nil {
			d.Close()
			return nil, err
		}
		return d, nil
	}
}

// authorize returns req again with credentials for the challenge of res
// (401 or 407), a new transaction's request: the CSeq one higher, the
// Call-ID and From tag the same (RFC 3261 §22.2). The digest-uri is the
// Request-URI as sent, parameters included (RFC 3261 §22.4, RFC 2617
// §3.2.2).
func authorize(req *sip.Request, res *sip.Response, user, pass string) (*sip.Request, bool) {
	challengeHeader, answerHeader := "WWW-Authenticate", "Authorization"
	switch res.StatusCode {
	case 401:
	case 407:
		challengeHeader, answerHeader = "Proxy-Authenticate", "Proxy-Authorization"
	default:
		return nil, false
	}
	var chal *digest.Challenge
	for _, h := range res.GetHeaders(challengeHeader) {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			continue
		}
		c.Algorithm = strings.ToUpper(c.Algorithm)
		if digest.CanDigest(c) {
			chal = c
			break
		}
	}
	if chal == nil {
		return nil, false
	}
	cred, err := digest.Digest(chal, digest.Options{Method: string(req.Method), URI: req.Recipient.String(), Username: user, Password: pass})
	if err != nil {
		return nil, false
	}
	next := req.Clone()
	next.RemoveHeader("Via")
	next.RemoveHeader(answerHeader)
	next.AppendHeader(sip.NewHeader(answerHeader, cred.String()))
	if cseq := next.CSeq(); cseq != nil {
		cseq.SeqNo++
	}
	next.Laddr = req.Laddr
	return next, true
}

// waitAnswer waits, within ctx, for the final answer to the INVITE of d.
// When ctx ends first it gives up at once: a CANCEL goes out if a
// provisional response came (RFC 3261 §9.1), the INVITE's retransmissions
// stop otherwise, and an answer that crosses the CANCEL is acknowledged
// and hung up later, by a goroutine the edge waits for.
func (e *Edge) waitAnswer(ctx context.Context, d *sipgo.DialogClientSession) error {
	var provisional atomic.Bool
	// claimed is taken by whichever comes first: the answer (the goroutine
	// hands it over) or ctx's end (the goroutine then cleans up).
	var claimed atomic.Bool
	wctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		err := d.WaitAnswer(wctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
			if res.IsProvisional() {
				provisional.Store(true)
			}
			return nil
		}})
		if claimed.CompareAndSwap(false, true) {
			done <- err
			return
		}
		// We gave up: a 200 that crossed our CANCEL leaves the return leg
		// answered; it is acknowledged and hung up, not left in dead air.
		if res := d.InviteResponse; err == nil || res != nil && res.IsSuccess() {
			e.ackAndBye(d)
		}
		d.Close()
	}()
	select {
	case err := <-done:
		cancel(nil)
		return err
	case <-ctx.Done():
		if !claimed.CompareAndSwap(false, true) {
			// The answer came first.
			cancel(nil)
			return <-done
		}
		if provisional.Load() {
			cancel(context.Canceled)
		} else {
			cancel(sipgo.WaitAnswerForceCancelErr)
		}
		return ctx.Err()
	}
}

// ackAndBye acknowledges an answer nobody wants any more and hangs it up.
func (e *Edge) ackAndBye(d *sipgo.DialogClientSession) {
	res := d.InviteResponse
	if id, err := sip.DialogIDFromResponse(res); err == nil {
		d.ID = id
	}
	ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
	defer cancel()
	if err := d.Ack(ctx); err != nil {
		return
	}
	target := d.InviteRequest.Recipient
	if c := res.Contact(); c != nil {
		target = c.Address
	}
	bye := sip.NewRequest(sip.BYE, target)
	bye.Laddr = d.InviteRequest.Laddr
	d.WriteBye(ctx, bye)
}

// returnCredentials answer the return leg's digest challenge: the
// transfer's own, else the tenant's (tenants[].sip.returnAuth).
func (e *Edge) returnCredentials(t *switchback.Transfer) (user, pass string) {
	if t.SIP != nil && t.SIP.ReturnAuthPassword != "" {
		return t.SIP.ReturnAuthUsername, t.SIP.ReturnAuthPassword
	}
	if ta := e.tenantsByID[t.TenantID]; ta != nil {
		return ta.returnAuth.Username, ta.returnAuth.Password
	}
	return "", ""
}

// tenantUser is the user part of a tenant's static URI.
func (e *Edge) tenantUser(tenantID string) string {
	if t := e.tenantsByID[tenantID]; t != nil && t.user != "" {
		return t.user
	}
	return tenantID
}
