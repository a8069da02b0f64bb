package softphone

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback/internal/media"
)

// TransferIDHeader carries the id of the call transfer a call is for; the
// value of DialOptions.TransferID. It is the header Switchback matches a
// call by.
const TransferIDHeader = "X-ASAPP-CallTransferId"

const (
	// DigitTone is how long each RFC 4733 digit lasts (and the Duration an
	// INFO digit announces), and DigitGap the pause between two digits.
	DigitTone = 100 * time.Millisecond
	DigitGap  = 200 * time.Millisecond
	// SilenceRMS is the loudness below which audio counts as silence (on
	// the 16-bit scale, about -50 dBFS).
	SilenceRMS = 100
	// promptPause is how long the far end must be quiet for its prompt to
	// count as over.
	promptPause = 300 * time.Millisecond
	// notifyTimeout bounds the NOTIFY that reports a REFER's outcome.
	notifyTimeout = 10 * time.Second
)

// DefaultCodecs are the codecs a call offers unless DialOptions.Codecs says
// otherwise, in the phone's preference.
var DefaultCodecs = []media.Codec{media.PCMU, media.PCMA}

// DialOptions say how a call is placed and what the phone does with the
// far end's requests within it.
type DialOptions struct {
	// Proxy is the host:port the INVITE is sent to; by default the
	// target URI's (see ParseTarget).
	Proxy string
	// TransferID, if set, is sent in the TransferIDHeader header.
	TransferID string
	// Headers are added to the INVITE.
	Headers []sip.Header
	// Username and Password answer a digest challenge (RFC 3261 §22.2;
	// MD5, or SHA-256 as RFC 8760 adds).
	Username, Password string
	// DeclineRefer refuses a REFER with 603. Otherwise it is accepted with
	// 202, and a NOTIFY reports the new call answered (RFC 3515 §2.4.5);
	// the phone does not dial it.
	DeclineRefer bool
	// Codecs are offered in this order; DefaultCodecs if empty.
	Codecs []media.Codec
	// Record keeps what the far end sends, for Call.Recording.
	Record bool
	// RTP, if set, is the socket the offer names for RTP, and the call's
	// media is left to the caller: the phone neither reads nor writes it,
	// Play and RFC 4733 digits are refused, and Params says where the far
	// end wants the RTP. The caller closes it.
	RTP *net.UDPConn
}

// RefusedError is a final answer to the INVITE other than 2xx.
type RefusedError struct {
	// Response is the final response.
	Response *sip.Response
}

func (e *RefusedError) Error() string { return "call refused: " + statusLine(e.Response) }

// errNoMedia is what the media methods of a call whose RTP is the
// caller's return.
var errNoMedia = errors.New("softphone: the call's RTP is left to the caller (DialOptions.RTP)")

func statusLine(res *sip.Response) string { return strconv.Itoa(res.StatusCode) + " " + res.Reason }

// Call is one answered call of a Phone. Its methods are safe for
// concurrent use. Close it once done.
type Call struct {
	p        *Phone
	opts     DialOptions
	events   *eventLog
	dialog   *sipgo.DialogClientSession
	media    *media.Session // nil when DialOptions.RTP is set
	params   media.Params
	answer   string
	answered time.Time

	// life ends at Close, and with it what the call's goroutines do.
	life    context.Context
	stop    context.CancelFunc
	running sync.WaitGroup

	rec       media.Recorder
	frames    atomic.Int64 // 20 ms frames heard
	lastSound atomic.Int64 // UnixNano of the last frame louder than silence

	ended       chan struct{} // closed when either side hung up
	endOnce     sync.Once
	byeReceived atomic.Bool
	closeOnce   sync.Once

	mu            sync.Mutex
	closed        bool    // no goroutine starts once set
	sumSquares    float64 // of every sample heard
	samples       int64
	digits        []rune // heard
	referTo       string // the Refer-To of the last REFER, or ""
	referAccepted bool
}

// Dial calls target (a SIP URI or a phone number, see ParseTarget),
// sending the INVITE with an SDP offer (RFC 3264 §5), answers a digest
// challenge if opts has credentials, and returns once the call is answered
// and acknowledged (RFC 3261 §13.2.2.4), with its media flowing: the
// phone hears the far end, and sends silence whenever it plays nothing, as
// a phone line does. A final answer other than 2xx is a *RefusedError; ctx
// ending before the answer cancels the INVITE (RFC 3261 §9.1).
func (p *Phone) Dial(ctx context.Context, target string, opts DialOptions) (*Call, error) {
	uri, dest, err := ParseTarget(target, opts.Proxy)
	if err != nil {
		return nil, err
	}
	return p.dial(ctx, uri, dest, opts, p.newEventLog())
}

func (p *Phone) dial(ctx context.Context, target sip.Uri, dest string, o DialOptions, events *eventLog) (*Call, error) {
	codecs := o.Codecs
	if len(codecs) == 0 {
		codecs = DefaultCodecs
	}
	var sess *media.Session
	var local net.Addr
	if o.RTP != nil {
		local = o.RTP.LocalAddr()
	} else {
		var err error
		if sess, err = media.ListenRTP(p.opts.LocalIP, p.opts.RTPPorts); err != nil {
			return nil, err
		}
		defer func() {
			if sess != nil {
				sess.Close() // not handed to a call
			}
		}()
	}
	body, err := p.offer(sess, local, codecs)
	if err != nil {
		return nil, err
	}

	req := sip.NewRequest(sip.INVITE, target)
	req.SetTransport(p.transport)
	req.SetDestination(dest)
	// A Contact of our own, not the DialogUA's shared one, which sipgo
	// would fill in with this call's port.
	contact := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: p.opts.Name, Host: p.opts.LocalIP.String()}}
	if p.transport != "UDP" {
		contact.Address.UriParams = sip.NewParams()
		contact.Address.UriParams.Add("transport", strings.ToLower(p.transport))
	}
	req.AppendHeader(contact)
	if o.TransferID != "" {
		req.AppendHeader(sip.NewHeader(TransferIDHeader, o.TransferID))
	}
	for _, h := range o.Headers {
		req.AppendHeader(h)
	}
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(body)

	dialog, err := p.dialogUA.WriteInvite(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("send INVITE to %s: %w", dest, err)
	}
	onResponse := func(res *sip.Response) error {
		switch {
		case res.IsSuccess():
			// Printed with its codec once the SDP is read.
		case (res.StatusCode == 401 || res.StatusCode == 407) && o.Password != "":
			events.printf("%s: answering the digest challenge as %s", statusLine(res), o.Username)
		default:
			events.printf("%s", statusLine(res))
		}
		return nil
	}
	err = dialog.WaitAnswer(ctx, sipgo.AnswerOptions{Username: o.Username, Password: o.Password, OnResponse: onResponse})
	if err != nil {
		dialog.Close()
		var refusedP *sipgo.ErrDialogResponse
		var refused sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &refusedP):
			return nil, &RefusedError{refusedP.Res}
		case errors.As(err, &refused):
			return nil, &RefusedError{refused.Res}
		case ctx.Err() != nil:
			return nil, fmt.Errorf("no answer: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("INVITE: %w", err)
	}

	res := dialog.InviteResponse
	params, err := negotiateAnswer(res.Body(), codecs)
	if err == nil && sess != nil {
		err = sess.Start(params)
	}
	if err != nil {
		// Answered with nothing usable: acknowledge, then hang up.
		dialog.Ack(ctx)
		dialog.Bye(ctx)
		dialog.Close()
		return nil, fmt.Errorf("the answer's SDP: %w", err)
	}
	life, stop := context.WithCancel(context.Background())
	c := &Call{p: p, opts: o, events: events, dialog: dialog, media: sess, params: params,
		answer: fmt.Sprintf("%s (%s)", statusLine(res), params.Codec), answered: time.Now(),
		life: life, stop: stop, ended: make(chan struct{})}
	sess = nil // the call's now
	p.calls.Store(dialog.ID, c)
	events.printf("%s", c.answer)
	c.startMedia()
	if err := dialog.Ack(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("send ACK: %w", err)
	}
	return c, nil
}

// offer is the SDP offer of a call whose RTP is sess's, or the socket at
// local.
func (p *Phone) offer(sess *media.Session, local net.Addr, codecs []media.Codec) ([]byte, error) {
	origin := media.NewOrigin()
	origin.Username = p.opts.Name
	var addr netip.AddrPort
	if sess != nil {
		addr = sess.LocalAddr()
	} else {
		addr = local.(*net.UDPAddr).AddrPort()
	}
	return media.BuildSDP(origin, media.OfferDescription(addr, codecs))
}

// negotiateAnswer reads the media parameters of the answer to our offer.
func negotiateAnswer(body []byte, codecs []media.Codec) (media.Params, error) {
	if len(body) == 0 {
		return media.Params{}, errors.New("the answer has no SDP")
	}
	answer, err := media.ParseOffer(body)
	if err != nil {
		return media.Params{}, err
	}
	return media.Negotiate(answer, codecs)
}

// startMedia starts hearing the far end, and sending silence whenever
// nothing else is played, as a phone line does: a gateway that ends calls
// without RTP (Switchback among them) keeps the call up.
func (c *Call) startMedia() {
	if c.media == nil {
		return
	}
	c.running.Add(2)
	go func() {
		defer c.running.Done()
		audio, digits := c.media.Audio(), c.media.Digits()
		for {
			select {
			case frame, ok := <-audio:
				if !ok {
					return // closed by Close
				}
				c.hear(frame)
			case d := <-digits:
				c.events.printf("received DTMF %c", d)
				c.mu.Lock()
				c.digits = append(c.digits, d)
				c.mu.Unlock()
			}
		}
	}()
	go func() {
		defer c.running.Done()
		silence := make([]int16, 5*media.FrameSamples)
		// Plays and digits queue behind one another, so a Play or a
		// digit waits at most for the current 100 ms of silence.
		for c.media.Play(c.life, silence) == nil {
		}
	}()
}

// hear takes one frame of the far end's audio.
func (c *Call) hear(frame []int16) {
	if c.opts.Record {
		c.rec.Write(frame)
	}
	c.frames.Add(1)
	var sum float64
	for _, s := range frame {
		sum += float64(s) * float64(s)
	}
	if math.Sqrt(sum/float64(len(frame))) > SilenceRMS {
		c.lastSound.Store(time.Now().UnixNano())
	}
	c.mu.Lock()
	c.sumSquares += sum
	c.samples += int64(len(frame))
	c.mu.Unlock()
}

// goOwned runs f in a goroutine that Close cancels and waits for; after
// Close it runs nothing.
func (c *Call) goOwned(f func(ctx context.Context)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		f(c.life)
	}()
}

// readBye answers the far end's BYE.
func (c *Call) readBye(req *sip.Request, tx sip.ServerTransaction) {
	c.events.printf("received BYE: the call was handed back")
	if err := c.dialog.ReadBye(req, tx); err != nil {
		c.events.printf("answer BYE: %v", err)
	}
	c.byeReceived.Store(true)
	c.end()
}

// readRefer answers the far end's REFER (RFC 3515): 603, or 202 and a
// NOTIFY that reports the new call answered.
func (c *Call) readRefer(req *sip.Request, tx sip.ServerTransaction) {
	target := ""
	if h := req.GetHeader("Refer-To"); h != nil {
		target = h.Value()
	}
	c.mu.Lock()
	c.referTo, c.referAccepted = target, !c.opts.DeclineRefer
	c.mu.Unlock()
	// Printed before the answer: once answered, the far end may hang up,
	// and Run return, before a line printed after it.
	if c.opts.DeclineRefer {
		c.events.printf("received REFER to %s: declined (--decline-refer)", target)
		tx.Respond(sip.NewResponseFromRequest(req, 603, "Declined", nil))
		return
	}
	c.events.printf("received REFER to %s: accepted (the softphone does not dial it)", target)
	tx.Respond(sip.NewResponseFromRequest(req, 202, "Accepted", nil))
	cseq := req.CSeq().SeqNo
	c.goOwned(func(ctx context.Context) {
		contact := c.dialog.InviteResponse.Contact()
		if contact == nil {
			return
		}
		n := c.withinCall(sip.NewRequest(sip.NOTIFY, *contact.Address.Clone()))
		n.AppendHeader(sip.NewHeader("Event", "refer;id="+strconv.FormatUint(uint64(cseq), 10)))
		n.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason=noresource"))
		n.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
		n.SetBody([]byte("SIP/2.0 200 OK\r\n"))
		ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
		defer cancel()
		if res, err := c.dialog.Do(ctx, n); err != nil {
			c.events.printf("NOTIFY: %v", err)
		} else {
			c.events.printf("sent NOTIFY (SIP/2.0 200 OK): %s", statusLine(res))
		}
	})
}

// readInfo answers an INFO within the call, taking the digit of an
// application/dtmf-relay body.
func (c *Call) readInfo(req *sip.Request, tx sip.ServerTransaction) {
	contentType := ""
	if h := req.ContentType(); h != nil {
		contentType = h.Value()
	}
	tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	d, ok := media.ParseInfoDTMF(contentType, req.Body())
	if !ok {
		return
	}
	if c.media != nil {
		c.media.InfoDigit(d) // heard with the RFC 4733 ones, once each
		return
	}
	c.events.printf("received DTMF %c (SIP INFO)", d)
	c.mu.Lock()
	c.digits = append(c.digits, d)
	c.mu.Unlock()
}

// Play plays pcm (8 kHz mono linear PCM) to the far end and returns once
// it is sent, or when ctx ends.
func (c *Call) Play(ctx context.Context, pcm []int16) error {
	if c.media == nil {
		return errNoMedia
	}
	return c.media.Play(ctx, pcm)
}

// SendDigits presses digits, DigitGap apart: as RFC 4733 telephone-events
// (§2.5: a start, updates, three ends) lasting DigitTone, or as SIP INFO
// requests (RFC 6086, application/dtmf-relay) when info is set.
func (c *Call) SendDigits(ctx context.Context, digits string, info bool) error {
	for i, d := range digits {
		if i > 0 {
			if err := sleepCtx(ctx, DigitGap); err != nil {
				return err
			}
		}
		// Each digit is printed as it goes: the far end may take it and
		// hang up before the INFO's answer or the last RFC 4733 packet.
		if info {
			c.events.printf("sent DTMF %c (SIP INFO)", d)
			if err := c.sendInfoDigit(ctx, d); err != nil {
				return err
			}
			continue
		}
		if c.media == nil {
			return errNoMedia
		}
		if !c.params.DTMF {
			return errors.New("the far end did not accept RFC 4733 telephone-events; try --info")
		}
		c.events.printf("sent DTMF %c", d)
		if err := c.media.SendDigit(ctx, d, DigitTone); err != nil {
			return fmt.Errorf("send DTMF %c: %w", d, err)
		}
	}
	return nil
}

// sendInfoDigit sends one digit in a SIP INFO within the dialog (RFC 6086)
// as application/dtmf-relay, the de facto format no RFC registers.
func (c *Call) sendInfoDigit(ctx context.Context, d rune) error {
	req := c.withinCall(sip.NewRequest(sip.INFO, c.remoteTarget()))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	req.SetBody(fmt.Appendf(nil, "Signal=%c\r\nDuration=%d\r\n", d, DigitTone.Milliseconds()))
	res, err := c.dialog.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("send INFO with DTMF %c: %w", d, err)
	}
	if !res.IsSuccess() {
		return fmt.Errorf("INFO with DTMF %c: %s", d, statusLine(res))
	}
	return nil
}

// WaitForPause waits until the far end has been quiet for 300 ms since the
// answer or its last sound, for at most limit.
func (c *Call) WaitForPause(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		quietSince := c.answered
		if n := c.lastSound.Load(); n != 0 {
			quietSince = time.Unix(0, n)
		}
		now := time.Now()
		if now.Sub(quietSince) >= promptPause || now.After(deadline) {
			return nil
		}
		if err := sleepCtx(ctx, min(quietSince.Add(promptPause).Sub(now), deadline.Sub(now))+time.Millisecond); err != nil {
			return err
		}
	}
}

// remoteTarget is where requests within the call go: the far end's
// Contact (RFC 3261 §12.1.2), or the INVITE's Request-URI without one.
func (c *Call) remoteTarget() sip.Uri {
	if ct := c.dialog.InviteResponse.Contact(); ct != nil {
		return *ct.Address.Clone()
	}
	return *c.dialog.InviteRequest.Recipient.Clone()
}

// withinCall readies req, a request of the phone within the call, for
// c.dialog, which adds the dialog's headers. It names the call's Contact
// (sipgo would add an empty one), and leaves from the socket the INVITE
// left from: sipgo binds only the requests that start a dialog, and the
// ACK and CANCEL it builds from them, to the phone's listener; any other
// request to an address the phone has not heard from would leave from a
// socket sipgo opens on 0.0.0.0.
func (c *Call) withinCall(req *sip.Request) *sip.Request {
	if ct := c.dialog.InviteRequest.Contact(); ct != nil {
		req.AppendHeader(sip.HeaderClone(ct))
	}
	c.dialog.InviteRequest.Laddr.Copy(&req.Laddr)
	return req
}

// Hangup sends BYE, unless the far end already hung up.
func (c *Call) Hangup(ctx context.Context) error {
	defer c.end()
	if err := c.dialog.WriteBye(ctx, c.withinCall(sip.NewRequest(sip.BYE, c.remoteTarget()))); err != nil {
		return fmt.Errorf("send BYE: %w", err)
	}
	return nil
}

// Ended is closed once either side has hung up.
func (c *Call) Ended() <-chan struct{} { return c.ended }

func (c *Call) end() { c.endOnce.Do(func() { close(c.ended) }) }

// ByeReceived says whether the far end hung up (for Switchback, handed
// the call back by BYE).
func (c *Call) ByeReceived() bool { return c.byeReceived.Load() }

// Refer returns the Refer-To of the last REFER the far end sent, and
// whether the phone accepted it; "" if none came.
func (c *Call) Refer() (referTo string, accepted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.referTo, c.referAccepted
}

// Answer is the final response and the codec, as "200 OK (PCMU)".
func (c *Call) Answer() string { return c.answer }

// Params are the media parameters the answer chose: codec, payload
// types, where the far end takes RTP.
func (c *Call) Params() media.Params { return c.params }

// Frames counts the 20 ms frames of audio heard so far.
func (c *Call) Frames() int64 { return c.frames.Load() }

// Heard is how much audio the far end has sent.
func (c *Call) Heard() time.Duration {
	return time.Duration(c.frames.Load()) * media.FrameSamples * time.Second / media.SampleRate
}

// Level is the root mean square of all the audio heard, on the 16-bit
// scale: above SilenceRMS, it was not silence.
func (c *Call) Level() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.samples == 0 {
		return 0
	}
	return math.Sqrt(c.sumSquares / float64(c.samples))
}

// DigitsHeard are the DTMF digits the far end sent, by RFC 4733 or INFO,
// in order.
func (c *Call) DigitsHeard() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.digits)
}

// Recording is what the far end sent, with DialOptions.Record: 8 kHz mono
// linear PCM.
func (c *Call) Recording() []int16 { return c.rec.PCM() }

// Stats are the RTP counts of the call's media.
func (c *Call) Stats() media.Stats {
	if c.media == nil {
		return media.Stats{}
	}
	return c.media.Stats()
}

// Close stops the call's media and its goroutines, and forgets its
// dialog. It does not hang up. It is safe to call more than once.
func (c *Call) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.stop()
		if c.media != nil {
			c.media.Close()
		}
		c.running.Wait()
		c.p.calls.Delete(c.dialog.ID)
		c.dialog.Close()
	})
}

// RMS is the root mean square of pcm, on the 16-bit scale.
func RMS(pcm []int16) float64 {
	if len(pcm) == 0 {
		return 0
	}
	var sum float64
	for _, s := range pcm {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(len(pcm)))
}

// sleepCtx waits for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
