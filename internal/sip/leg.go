package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/call"
	"github.com/switchback/switchback/internal/media"
)

// codecs are the audio codecs Switchback answers with, in its preference
// when it makes the offer.
var codecs = []media.Codec{media.PCMU, media.PCMA}

// dialogSession is what a leg needs of its sipgo dialog, whichever side
// of it Switchback is: the caller's (Switchback answered: a
// DialogServerSession) or the return leg's (Switchback called: a
// DialogClientSession).
type dialogSession interface {
	Do(ctx context.Context, req *sip.Request) (*sip.Response, error)
	WriteBye(ctx context.Context, bye *sip.Request) error
	ReadBye(req *sip.Request, tx sip.ServerTransaction) error
	Close() error
}

// leg is one SIP dialog of a call with its media: the caller's leg, or the
// return leg an INVITE hand-back placed. Both are driven the same way: one
// offer/answer path, one RFC 4028 session timer, hold and unhold, DTMF by
// INFO, BYE either way. The caller's leg also implements call.Leg, for the
// call runtime.
type leg struct {
	e      *Edge
	name   switchback.Leg
	key    string // the dialog id its in-dialog requests carry, as we see them
	d      dialogSession
	media  *media.Session
	origin *media.Origin
	rep    call.Reporter
	log    *slog.Logger
	// transport is the transport of the dialog's requests.
	transport string

	mu           sync.Mutex
	target       sip.Uri           // where in-dialog requests go: the peer's Contact
	lastDesc     media.Description // the SDP we last sent
	params       media.Params      // as last negotiated
	mediaStarted bool
	timer        timerState // RFC 4028, as last negotiated
	by           string     // who ended it; "" while up

	ended   chan struct{} // closed when the leg is gone
	endOnce sync.Once
	byeOnce sync.Once
	stop    chan struct{} // closed by close: the leg's goroutines end
	// base is cancelled by close: the requests the leg sends end with it.
	base       context.Context
	cancelBase context.CancelFunc
	stopOnce   sync.Once
	wg         sync.WaitGroup

	// referring is set while a REFER hand-back waits: the caller may stop
	// sending RTP while it calls the transfer target, so the RTP timeout
	// does not end the leg then; sip.referTimeout bounds the wait.
	referring atomic.Bool
	// byeCame is set once the peer sent BYE, valid or not.
	byeCame atomic.Bool
	// unacked is the 200 to the peer's last re-INVITE while it waits
	// for its ACK (see retransmit); nil when none does. Under mu.
	unacked *unacked
	// closing is set by close, under mu: no goroutine starts after.
	closing   bool
	refreshed chan struct{}    // the peer refreshed the session
	infos     chan rune        // digits to send by INFO, in order
	notifies  chan referNotify // the NOTIFYs of our REFER (caller leg)
	peer      *leg             // the other leg while bridged, set before the bridge is announced
	peerMu    sync.Mutex
}

// newLeg makes a leg on an established dialog with its media session.
func newLeg(e *Edge, name switchback.Leg, d dialogSession, sess *media.Session, origin *media.Origin, rep call.Reporter, log *slog.Logger) *leg {
	l := &leg{e: e, name: name, d: d, media: sess, origin: origin, rep: rep, log: log,
		ended: make(chan struct{}), stop: make(chan struct{}), refreshed: make(chan struct{}, 1),
		infos: make(chan rune, 32), notifies: make(chan referNotify, 8)}
	l.base, l.cancelBase = context.WithCancel(context.Background())
	return l
}

// run starts the leg's goroutines: its session timer, its INFO sender, and
// the delivery of its digits and audio to the call. They end with close.
func (l *leg) run() {
	l.hear()
	l.wg.Add(3)
	go l.runTimer()
	go l.sendInfos()
	go l.deliver()
}

// close ends the leg's goroutines and frees its media and its entry in the
// dialog table. It does not signal anything: see bye.
func (l *leg) close() {
	l.stopOnce.Do(func() {
		l.mu.Lock()
		l.closing = true
		l.mu.Unlock()
		close(l.stop)
		l.cancelBase()
		l.wg.Wait()
		l.e.dialogs.Delete(l.key)
		l.media.Close()
		l.d.Close()
	})
}

// end records that the leg is gone, and why.
func (l *leg) end(by string) {
	l.endOnce.Do(func() {
		l.mu.Lock()
		l.by = by
		l.mu.Unlock()
		close(l.ended)
	})
}

// Ended implements call.Leg.
func (l *leg) Ended() <-chan struct{} { return l.ended }

// EndedBy implements call.Leg.
func (l *leg) EndedBy() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.by
}

// gone says how the leg ended, in words for a hand-back's reason.
func (l *leg) gone() string {
	switch l.EndedBy() {
	case "rtp-timeout":
		return "the " + string(l.name) + "'s RTP stopped"
	case "session-timer":
		return "the " + string(l.name) + "'s session timer lapsed"
	}
	return "the " + string(l.name) + " hung up"
}

// peerHungUp reports whether the leg ended because its peer sent BYE.
func (l *leg) peerHungUp() bool {
	by := l.EndedBy()
	return by == string(l.name)
}

// Bye implements call.Leg: it hangs up the leg from Switchback's side,
// unless its peer already did. The leg then counts as ended by
// Switchback, if it had not ended otherwise.
func (l *leg) Bye(ctx context.Context) error {
	if l.peerHungUp() {
		return nil
	}
	var err error
	l.byeOnce.Do(func() {
		l.mu.Lock()
		target := l.target
		l.mu.Unlock()
		bye := sip.NewRequest(sip.BYE, target)
		l.e.bindLocal(bye, l.transport)
		err = l.d.WriteBye(ctx, bye)
	})
	l.end("switchback")
	return err
}

// advertised is where the leg's SDP says its media goes.
func (l *leg) advertised() netip.AddrPort {
	return netip.AddrPortFrom(l.e.host, l.media.LocalAddr().Port())
}

// errNotAcceptable is an offer Switchback cannot take: answered 488.
var errNotAcceptable = errors.New("not acceptable")

// answerOffer takes an SDP offer from the peer (an INVITE, re-INVITE or
// UPDATE, RFC 3264 §5-8): it negotiates it, starts or updates the media,
// logs a change of hold, and returns the answer. errNotAcceptable when
// the offer cannot be taken.
func (l *leg) answerOffer(body []byte) ([]byte, error) {
	offer, err := media.ParseOffer(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotAcceptable, err)
	}
	params, err := media.Negotiate(offer, codecs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotAcceptable, err)
	}
	prev, err := l.apply(params)
	if err != nil {
		return nil, err
	}
	l.recordHold(prev, params.Direction)
	desc := params.AnswerDescription(l.advertised(), offer)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastDesc = desc
	return media.BuildSDP(l.origin, desc)
}

// takeAnswer applies the peer's answer to an offer Switchback made: in
// the ACK of a late offer, or the return leg's 200.
func (l *leg) takeAnswer(body []byte) error {
	answer, err := media.ParseOffer(body)
	if err != nil {
		return fmt.Errorf("unreadable SDP answer: %w", err)
	}
	params, err := media.Negotiate(answer, codecs)
	if err != nil {
		return fmt.Errorf("no common codec in the answer: %w", err)
	}
	_, err = l.apply(params)
	return err
}

// offerAgain is the offer a re-INVITE without SDP asks for (RFC 3261
// §14.2): the description last sent, the answer to it coming in the ACK.
func (l *leg) offerAgain() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	desc := l.lastDesc
	if !desc.Addr.IsValid() {
		desc = media.OfferDescription(l.advertised(), codecs)
	}
	desc.Offer = nil
	return media.BuildSDP(l.origin, desc)
}

// apply starts the media with the first negotiated parameters and updates
// it with later ones; it returns the direction before.
func (l *leg) apply(p media.Params) (media.Direction, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := l.params.Direction
	l.params = p
	if l.mediaStarted {
		l.media.Update(p)
		return prev, nil
	}
	if err := l.media.Start(p); err != nil {
		return prev, err
	}
	l.mediaStarted = true
	return prev, nil
}

// currentParams is the leg's media as last negotiated.
func (l *leg) currentParams() media.Params {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.params
}

// recordHold logs the leg going on or off hold: our direction stops or
// starts sending when the peer holds (RFC 3264 §8.4).
func (l *leg) recordHold(prev, next media.Direction) {
	switch {
	case prev.Sends() && !next.Sends():
		l.rep.Record(switchback.EventHold, map[string]string{"leg": string(l.name)})
	case !prev.Sends() && next.Sends() && prev != 0:
		l.rep.Record(switchback.EventUnhold, map[string]string{"leg": string(l.name)})
	}
}

// onRequest handles a request within the leg's dialog.
func (l *leg) onRequest(req *sip.Request, tx sip.ServerTransaction) {
	switch req.Method {
	case sip.BYE:
		l.byeCame.Store(true) // before ReadBye ends the dialog: see answer
		if err := l.d.ReadBye(req, tx); err != nil {
			respond(tx, req, 400, "Bad Request")
			return
		}
		l.end(string(l.name))
	case sip.INVITE, sip.UPDATE:
		l.modify(req, tx)
	case sip.INFO:
		l.onInfo(req, tx)
	case sip.NOTIFY:
		l.onNotify(req, tx)
	case sip.ACK:
		l.onAck(req, tx)
	default:
		respond(tx, req, 405, "Method Not Allowed", sip.NewHeader("Allow", allowed))
	}
}

// modify handles a re-INVITE or UPDATE: a session refresh (RFC 4028), a
// target refresh (RFC 3261 §12.2.2), and perhaps new media (hold, unhold,
// another address or codec).
func (l *leg) modify(req *sip.Request, tx sip.ServerTransaction) {
	select {
	case l.refreshed <- struct{}{}:
	default:
	}
	if c := req.Contact(); c != nil && req.Method == sip.INVITE {
		l.mu.Lock()
		l.target = c.Address
		l.mu.Unlock()
	}
	var body []byte
	var err error
	switch {
	case len(req.Body()) > 0:
		body, err = l.answerOffer(req.Body())
	case req.Method == sip.INVITE:
		body, err = l.offerAgain()
	}
	if errors.Is(err, errNotAcceptable) {
		respond(tx, req, 488, "Not Acceptable Here")
		return
	} else if err != nil {
		l.log.Warn("answer an offer", "leg", string(l.name), "err", err)
		respond(tx, req, 500, "Server Internal Error")
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.AppendHeader(l.e.contactFor(l.transport))
	l.mu.Lock()
	timer := l.timer
	l.mu.Unlock()
	if timer.interval > 0 {
		res.AppendHeader(sip.NewHeader("Session-Expires", timer.header(false)))
		res.AppendHeader(sip.NewHeader("Require", "timer"))
	}
	if req.Method == sip.INVITE && !sip.IsReliable(req.Transport()) {
		l.retransmit(tx, res, req.CSeq().SeqNo)
	}
	tx.Respond(res)
}

// unacked is a 200 to a re-INVITE waiting for its ACK.
type unacked struct {
	cseq  uint32
	acked chan struct{} // closed by the ACK, or by the next re-INVITE
}

// retransmit sends res, the 200 to the peer's re-INVITE with CSeq cseq
// over UDP, again until its ACK comes: T1 after the first, then twice as
// long each time up to T2, for 64*T1 at most (RFC 3261 §13.3.1.4, which
// §14.2 applies to re-INVITEs). That is the UAS core's work, not the
// transaction's, which passes 2xx retransmissions on but makes none.
func (l *leg) retransmit(tx sip.ServerTransaction, res *sip.Response, cseq uint32) {
	u := &unacked{cseq: cseq, acked: make(chan struct{})}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	if l.unacked != nil {
		close(l.unacked.acked) // an older 200 is not retransmitted past a newer re-INVITE
	}
	l.unacked = u
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		defer l.settle(u)
		wait := sip.T1
		t := time.NewTimer(wait)
		defer t.Stop()
		giveUp := time.NewTimer(64 * sip.T1)
		defer giveUp.Stop()
		for {
			select {
			case <-u.acked:
				return
			case <-l.stop:
				return
			case <-giveUp.C:
				l.log.Info("no ACK to the 200 of a re-INVITE", "leg", string(l.name), "cseq", cseq)
				return
			case <-t.C:
				if tx.Respond(res) != nil {
					return
				}
				wait = min(2*wait, sip.T2)
				t.Reset(wait)
			}
		}
	}()
}

// settle forgets u once it no longer waits.
func (l *leg) settle(u *unacked) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unacked == u {
		l.unacked = nil
	}
}

// acked takes the ACK of a re-INVITE's 200, with CSeq cseq.
func (l *leg) acked(cseq uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u := l.unacked; u != nil && u.cseq == cseq {
		close(u.acked)
		l.unacked = nil
	}
}

// onAck takes the ACK of our answer to an INVITE; it may carry the answer
// to an offer Switchback made (a late offer, or a re-INVITE without SDP).
func (l *leg) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if cseq := req.CSeq(); cseq != nil {
		l.acked(cseq.SeqNo)
	}
	if d, ok := l.d.(interface {
		ReadAck(*sip.Request, sip.ServerTransaction) error
	}); ok {
		d.ReadAck(req, tx)
	}
	if len(req.Body()) > 0 {
		if err := l.takeAnswer(req.Body()); err != nil {
			l.log.Warn("SDP in the ACK", "leg", string(l.name), "err", err)
		}
	}
}
