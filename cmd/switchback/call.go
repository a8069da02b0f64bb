package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback/internal/media"
	sipedge "github.com/switchback/switchback/internal/sip"
)

const callUsage = `Usage: switchback call [flags] TARGET

A softphone for trying Switchback. It calls TARGET, a SIP URI such as
sip:demo@127.0.0.1:5060, or a phone number such as +12025550100 (called as
sip:+12025550100@HOST:PORT, the --proxy address), presses the --dtmf digits
once the greeting is over, and waits for the far end to hand the call back:
by BYE, or by REFER, which it accepts (202, then a NOTIFY reporting the new
call answered, without dialling it) or, with --decline-refer, refuses with
603. It prints one line per event, then how the call went.

Exit status: 0 when the call was answered and ended normally (the far end
hung up, or --hangup-after passed); 1 otherwise.

Flags:
`

// Defaults of switchback call; demo uses them too.
const (
	defaultDTMFDelay   = 1500 * time.Millisecond
	defaultCallTimeout = 60 * time.Second
	defaultPhoneRTP    = "40000-40999"
)

const (
	// digitTone is how long each RFC 4733 digit lasts, and digitGap the
	// pause between two digits.
	digitTone = 100 * time.Millisecond
	digitGap  = 200 * time.Millisecond
	// promptPause is how long the far end must be quiet for its prompt to
	// count as over, and promptWait how long past --dtmf-delay the
	// softphone waits for that before pressing anyway.
	promptPause = 300 * time.Millisecond
	promptWait  = 10 * time.Second
	// silenceRMS is the loudness below which audio counts as silence (on
	// the 16-bit scale, about -50 dBFS).
	silenceRMS = 100
)

func runCall(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, callUsage)
		fs.PrintDefaults()
	}
	transferID := fs.String("transfer-id", "", "call transfer id, sent as the "+sipedge.TransferIDHeader+" header")
	proxy := fs.String("proxy", "", "host:port the INVITE goes to (default: the URI's host and port; 127.0.0.1:5060 for a phone number)")
	transport := fs.String("transport", "udp", "SIP transport: udp or tcp")
	user := fs.String("user", "", "username answering a digest challenge")
	password := fs.String("password", "", "password answering a digest challenge (default $SWITCHBACK_SIP_PASSWORD)")
	play := fs.String("play", "", "WAV file to play once answered")
	dtmf := fs.String("dtmf", "", `digits to press, e.g. "1#"`)
	dtmfDelay := fs.Duration("dtmf-delay", defaultDTMFDelay, "how long after the answer to press the digits (later if the far end is still playing)")
	info := fs.Bool("info", false, "send the digits as SIP INFO (application/dtmf-relay) instead of RFC 4733 events")
	record := fs.String("record", "", "save what is heard to this WAV file (8 kHz 16-bit mono)")
	hangupAfter := fs.Duration("hangup-after", 0, "hang up this long after the answer (default: wait for the far end)")
	timeout := fs.Duration("timeout", defaultCallTimeout, "give up on the call after this long, answered or not")
	localIP := fs.String("local-ip", "127.0.0.1", "local address for SIP and RTP")
	rtpPorts := fs.String("rtp-ports", defaultPhoneRTP, "UDP ports for RTP, MIN-MAX")
	declineRefer := fs.Bool("decline-refer", false, "refuse a REFER with 603 instead of accepting it")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		fs.Usage()
		return errors.New("usage: switchback call [flags] TARGET")
	}

	opts := phoneOptions{DeclineRefer: *declineRefer, Username: *user, Password: firstNonEmpty(*password, getenv("SWITCHBACK_SIP_PASSWORD")), Events: stdout,
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if opts.Password != "" && opts.Username == "" {
		return errors.New("--password needs --user")
	}
	switch strings.ToLower(*transport) {
	case "udp", "tcp":
		opts.Transport = strings.ToUpper(*transport)
	default:
		return fmt.Errorf("--transport: %q is not udp or tcp", *transport)
	}
	if opts.LocalIP, err = netip.ParseAddr(*localIP); err != nil {
		return fmt.Errorf("--local-ip: %q is not an IP address", *localIP)
	}
	if opts.RTPPorts, err = parsePortRange(*rtpPorts); err != nil {
		return fmt.Errorf("--rtp-ports: %w", err)
	}
	plan := callPlan{DTMF: *dtmf, DTMFDelay: *dtmfDelay, InfoDTMF: *info, HangupAfter: *hangupAfter, Timeout: *timeout}
	if plan.Target, plan.Dest, err = parseTarget(pos[0], *proxy); err != nil {
		return err
	}
	if *transferID != "" {
		plan.Headers = append(plan.Headers, sip.NewHeader(sipedge.TransferIDHeader, *transferID))
	}
	for _, d := range plan.DTMF {
		if _, ok := media.DigitEvent(d); !ok {
			return fmt.Errorf("--dtmf: %q is not a DTMF digit (0-9, *, #, A-D)", d)
		}
	}
	switch {
	case plan.DTMFDelay < 0:
		return errors.New("--dtmf-delay: must not be negative")
	case plan.HangupAfter < 0:
		return errors.New("--hangup-after: must not be negative")
	case plan.Timeout <= 0:
		return errors.New("--timeout: must be more than 0")
	}
	if *play != "" {
		if plan.Play, err = loadWAVFile(*play); err != nil {
			return fmt.Errorf("--play: %w", err)
		}
		plan.PlayName = *play
	}

	phone, err := newSoftphone(opts)
	if err != nil {
		return err
	}
	defer phone.Close()
	r := phone.Call(ctx, plan)
	if *record != "" && r.Answered {
		if err := saveWAV(*record, r.Recording); err != nil {
			r.print(stdout, "")
			return fmt.Errorf("--record: %w", err)
		}
	}
	r.print(stdout, *record)
	return r.Err
}

// phoneNumberPattern is what a TARGET that is a phone number looks like.
var phoneNumberPattern = regexp.MustCompile(`^\+?[0-9]{2,15}$`)

// parseTarget returns the Request-URI of a call to target and the host:port
// the INVITE is sent to: proxy if set, else the URI's host and port.
func parseTarget(target, proxy string) (sip.Uri, string, error) {
	if proxy != "" {
		host, port, err := net.SplitHostPort(proxy)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return sip.Uri{}, "", fmt.Errorf("--proxy: %q is not host:port", proxy)
		}
	}
	lower := strings.ToLower(target)
	switch {
	case strings.HasPrefix(lower, "sip:"):
		var uri sip.Uri
		if err := sip.ParseUri(target, &uri); err != nil || uri.Host == "" {
			return sip.Uri{}, "", fmt.Errorf("%q is not a SIP URI such as sip:demo@127.0.0.1:5060", target)
		}
		if proxy != "" {
			return uri, proxy, nil
		}
		return uri, uriHostPort(uri), nil
	case strings.HasPrefix(lower, "sips:"):
		return sip.Uri{}, "", fmt.Errorf("%q: sips: (TLS) is not supported; use sip: with --transport udp or tcp", target)
	case phoneNumberPattern.MatchString(target):
		if proxy == "" {
			proxy = "127.0.0.1:5060"
		}
		host, port, _ := net.SplitHostPort(proxy)
		n, _ := strconv.Atoi(port)
		return sip.Uri{Scheme: "sip", User: target, Host: host, Port: n}, proxy, nil
	}
	return sip.Uri{}, "", fmt.Errorf("%q is neither a SIP URI (sip:user@host:port) nor a phone number (+12025550100)", target)
}

// uriHostPort is where a request to uri goes without a proxy: its host and
// port, 5060 if it names none.
func uriHostPort(uri sip.Uri) string {
	port := uri.Port
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(uri.Host, strconv.Itoa(port))
}

// parsePortRange reads "MIN-MAX".
func parsePortRange(s string) (media.PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(lo)
	last, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || first < 1 || last > 65535 || first >= last {
		return media.PortRange{}, fmt.Errorf("%q is not a port range such as %s", s, defaultPhoneRTP)
	}
	return media.PortRange{Min: first, Max: last}, nil
}

func loadWAVFile(name string) ([]int16, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return media.LoadWAV(f)
}

func saveWAV(name string, pcm []int16) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := media.WriteWAV(f, pcm, media.SampleRate); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// phoneCodecs are the codecs the softphone offers, in its preference.
var phoneCodecs = []media.Codec{media.PCMU, media.PCMA}

// phoneOptions are what a softphone is built from.
type phoneOptions struct {
	LocalIP   netip.Addr      // where SIP and RTP bind
	RTPPorts  media.PortRange // the zero range: any free port
	Transport string          // "UDP" or "TCP"
	// Username and Password answer a digest challenge (MD5 or SHA-256).
	Username, Password string
	// DeclineRefer refuses a REFER with 603; else it is accepted, and a
	// NOTIFY reports the new call answered (the softphone does not dial it).
	DeclineRefer bool
	// Events receives one line per event of a call; nil discards them.
	Events io.Writer
	// Log receives sipgo's own warnings; nil discards them.
	Log *slog.Logger
}

// softphone is a SIP user agent that places calls: one sipgo UserAgent
// whose client sends the INVITEs and whose server takes the far end's
// requests within the calls (its BYE, above all).
type softphone struct {
	opts     phoneOptions
	events   *eventLog
	ua       *sipgo.UserAgent
	udp      net.PacketConn // the UDP port it listens on, over UDP
	served   chan struct{}  // closed once it no longer serves udp
	dialogUA *sipgo.DialogUA
	calls    sync.Map // dialog id -> *phoneCall
}

func newSoftphone(o phoneOptions) (*softphone, error) {
	if o.Events == nil {
		o.Events = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if !o.LocalIP.IsValid() {
		o.LocalIP = netip.MustParseAddr("127.0.0.1")
	}
	if o.Transport == "" {
		o.Transport = "UDP"
	}
	host := o.LocalIP.String()
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("switchback-call"),
		sipgo.WithUserAgentHostname(host),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(o.Log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(o.Log),
			// Retransmitted responses of finished transactions, such as a
			// 100 Trying after a challenge, need nothing.
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})),
	)
	if err != nil {
		return nil, fmt.Errorf("softphone: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(o.Log))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("softphone: %w", err)
	}
	p := &softphone{opts: o, events: &eventLog{w: o.Events, start: time.Now()}, ua: ua, served: make(chan struct{})}
	srv.OnBye(p.onBye)
	srv.OnRefer(p.onRefer)
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})

	// Over UDP the softphone listens on a port of its own, as a phone
	// does, and sends from it: the Contact names it and the far end's BYE
	// comes back to it. Over TCP requests go on a connection the transport
	// layer opens, which the far end's BYE comes back on.
	connAddr := net.JoinHostPort(host, "0")
	if o.Transport == "UDP" {
		p.udp, err = net.ListenPacket("udp", connAddr)
		if err != nil {
			ua.Close()
			return nil, fmt.Errorf("softphone: %w", err)
		}
		connAddr = p.udp.LocalAddr().String()
		go func() {
			defer close(p.served)
			srv.ServeUDP(p.udp)
		}()
		// Requests find the listener in the transport layer's pool, where
		// ServeUDP puts it first thing.
		pool, deadline := ua.TransportLayer().Pool("udp"), time.Now().Add(time.Second)
		for pool.Size() == 0 {
			if time.Now().After(deadline) {
				p.Close()
				return nil, errors.New("softphone: the SIP listener did not start")
			}
			time.Sleep(time.Millisecond)
		}
	} else {
		close(p.served)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientLogger(o.Log),
		sipgo.WithClientConnectionAddr(connAddr))
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("softphone: %w", err)
	}
	p.dialogUA = &sipgo.DialogUA{Client: client}
	return p, nil
}

// Close ends the softphone's transports.
func (p *softphone) Close() error {
	err := p.ua.Close()
	if p.udp != nil {
		p.udp.Close() // the transport layer leaves its listeners to their owner
	}
	<-p.served
	return err
}

// callRefused is a final answer to the INVITE other than 2xx.
type callRefused struct{ Res *sip.Response }

func (e *callRefused) Error() string { return "call refused: " + statusLine(e.Res) }

func statusLine(res *sip.Response) string { return strconv.Itoa(res.StatusCode) + " " + res.Reason }

// Dial calls target, sending the INVITE with an SDP offer (RFC 3264 §5) to
// dest (host:port) with headers, answers a digest challenge if the
// softphone has credentials (RFC 3261 §22.2, RFC 8760 for SHA-256), and
// returns once the call is answered and acknowledged (RFC 3261 §13.2.2.4),
// with its media flowing. A final answer other than 2xx is a *callRefused;
// ctx ending before the answer cancels the INVITE (RFC 3261 §9.1).
func (p *softphone) Dial(ctx context.Context, target sip.Uri, dest string, headers ...sip.Header) (*phoneCall, error) {
	sess, err := media.ListenRTP(p.opts.LocalIP, p.opts.RTPPorts)
	if err != nil {
		return nil, err
	}
	origin := media.NewOrigin()
	origin.Username = "switchback-call"
	body, err := media.BuildSDP(origin, media.OfferDescription(sess.LocalAddr(), phoneCodecs))
	if err != nil {
		sess.Close()
		return nil, err
	}

	req := sip.NewRequest(sip.INVITE, target)
	req.SetTransport(p.opts.Transport)
	req.SetDestination(dest)
	// A Contact of our own, not the DialogUA's shared one, which sipgo
	// would fill in with this call's port.
	contact := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "switchback-call", Host: p.opts.LocalIP.String()}}
	if p.opts.Transport != "UDP" {
		contact.Address.UriParams = sip.NewParams()
		contact.Address.UriParams.Add("transport", strings.ToLower(p.opts.Transport))
	}
	req.AppendHeader(contact)
	for _, h := range headers {
		req.AppendHeader(h)
	}
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(body)

	dialog, err := p.dialogUA.WriteInvite(ctx, req)
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("send INVITE to %s: %w", dest, err)
	}
	err = dialog.WaitAnswer(ctx, sipgo.AnswerOptions{Username: p.opts.Username, Password: p.opts.Password, OnResponse: p.onResponse})
	if err != nil {
		sess.Close()
		dialog.Close()
		var refusedP *sipgo.ErrDialogResponse
		var refused sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &refusedP):
			return nil, &callRefused{refusedP.Res}
		case errors.As(err, &refused):
			return nil, &callRefused{refused.Res}
		case ctx.Err() != nil:
			return nil, fmt.Errorf("no answer: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("INVITE: %w", err)
	}

	res := dialog.InviteResponse
	c := &phoneCall{p: p, dialog: dialog, media: sess, answered: time.Now(), ended: make(chan struct{})}
	p.calls.Store(dialog.ID, c)
	params, err := negotiateAnswer(res.Body())
	if err == nil {
		err = sess.Start(params)
	}
	if err != nil {
		// Answered with nothing usable: acknowledge, then hang up.
		dialog.Ack(ctx)
		c.Hangup(ctx)
		c.Close()
		return nil, fmt.Errorf("the answer's SDP: %w", err)
	}
	c.Answer = fmt.Sprintf("%s (%s)", statusLine(res), params.Codec)
	c.params = params
	p.events.printf("%s", c.Answer)
	c.startMedia()
	if err := dialog.Ack(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("send ACK: %w", err)
	}
	return c, nil
}

// negotiateAnswer reads the media parameters of the answer to our offer.
func negotiateAnswer(body []byte) (media.Params, error) {
	if len(body) == 0 {
		return media.Params{}, errors.New("the answer has no SDP")
	}
	answer, err := media.ParseOffer(body)
	if err != nil {
		return media.Params{}, err
	}
	return media.Negotiate(answer, phoneCodecs)
}

// onResponse prints the INVITE's responses before the final 2xx.
func (p *softphone) onResponse(res *sip.Response) error {
	switch {
	case res.IsSuccess():
		// Printed with its codec once the SDP is read.
	case (res.StatusCode == 401 || res.StatusCode == 407) && p.opts.Password != "":
		p.events.printf("%s: answering the digest challenge as %s", statusLine(res), p.opts.Username)
	default:
		p.events.printf("%s", statusLine(res))
	}
	return nil
}

// onBye is the far end hanging up: for Switchback, handing the call back.
func (p *softphone) onBye(req *sip.Request, tx sip.ServerTransaction) {
	id, err := sip.DialogIDFromRequestUAC(req)
	v, ok := p.calls.Load(id)
	if err != nil || !ok {
		tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	c := v.(*phoneCall)
	p.events.printf("received BYE: the call was handed back")
	if err := c.dialog.ReadBye(req, tx); err != nil {
		p.events.printf("answer BYE: %v", err)
	}
	c.end()
}

// onRefer is the far end handing the call back by a blind transfer.
func (p *softphone) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	id, err := sip.DialogIDFromRequestUAC(req)
	v, ok := p.calls.Load(id)
	if err != nil || !ok {
		tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	c := v.(*phoneCall)
	target := ""
	if h := req.GetHeader("Refer-To"); h != nil {
		target = h.Value()
	}
	if p.opts.DeclineRefer {
		tx.Respond(sip.NewResponseFromRequest(req, 603, "Declined", nil))
		p.events.printf("received REFER to %s: declined (--decline-refer)", target)
		return
	}
	tx.Respond(sip.NewResponseFromRequest(req, 202, "Accepted", nil))
	p.events.printf("received REFER to %s: accepted (the softphone does not dial it)", target)
	c.mu.Lock()
	c.referTo = target
	c.mu.Unlock()
	cseq := req.CSeq().SeqNo
	go func() {
		contact := c.dialog.InviteResponse.Contact()
		if contact == nil {
			return
		}
		n := sip.NewRequest(sip.NOTIFY, contact.Address)
		n.AppendHeader(sip.NewHeader("Event", "refer;id="+strconv.FormatUint(uint64(cseq), 10)))
		n.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason=noresource"))
		n.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
		n.SetBody([]byte("SIP/2.0 200 OK\r\n"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if res, err := c.dialog.Do(ctx, n); err != nil {
			p.events.printf("NOTIFY: %v", err)
		} else {
			p.events.printf("sent NOTIFY (SIP/2.0 200 OK): %s", statusLine(res))
		}
	}()
}

// phoneCall is one answered call of a softphone.
type phoneCall struct {
	p        *softphone
	dialog   *sipgo.DialogClientSession
	media    *media.Session
	params   media.Params
	answered time.Time
	// Answer is the final response and codec, as "200 OK (PCMU)".
	Answer string

	rec       media.Recorder
	frames    atomic.Int64 // 20 ms frames heard
	lastSound atomic.Int64 // UnixNano of the last frame louder than silence

	ended   chan struct{} // closed when either side hung up
	endOnce sync.Once

	mu      sync.Mutex
	referTo string // the Refer-To of a REFER accepted, or ""

	stopMedia context.CancelFunc
	running   sync.WaitGroup
}

// startMedia starts hearing the far end, and sending silence whenever
// nothing else is played, as a phone line does: a gateway that ends calls
// without RTP (Switchback among them) keeps the call up.
func (c *phoneCall) startMedia() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stopMedia = cancel
	c.running.Add(2)
	go func() {
		defer c.running.Done()
		for frame := range c.media.Audio() {
			c.rec.Write(frame)
			c.frames.Add(1)
			if rms(frame) > silenceRMS {
				c.lastSound.Store(time.Now().UnixNano())
			}
		}
	}()
	go func() {
		defer c.running.Done()
		silence := make([]int16, 5*media.FrameSamples)
		// Plays and digits queue behind one another, so a Play or a
		// digit waits at most for the current 100 ms of silence.
		for c.media.Play(ctx, silence) == nil {
		}
	}()
}

// Play plays pcm to the far end and returns once it is sent.
func (c *phoneCall) Play(ctx context.Context, pcm []int16) error { return c.media.Play(ctx, pcm) }

// SendDigits presses digits, as RFC 4733 telephone-events (§2.5: a start,
// updates, three ends), or as SIP INFO requests when info is set, digitGap
// apart.
func (c *phoneCall) SendDigits(ctx context.Context, digits string, info bool) error {
	for i, d := range digits {
		if i > 0 {
			if err := sleepCtx(ctx, digitGap); err != nil {
				return err
			}
		}
		if info {
			if err := c.sendInfoDigit(ctx, d); err != nil {
				return err
			}
			c.p.events.printf("sent DTMF %c (SIP INFO)", d)
			continue
		}
		if !c.params.DTMF {
			return errors.New("the far end did not accept RFC 4733 telephone-events; try --info")
		}
		// Printed first: the far end takes the digit from the first
		// packet and may hang up before the last is sent.
		c.p.events.printf("sent DTMF %c", d)
		if err := c.media.SendDigit(ctx, d, digitTone); err != nil {
			return fmt.Errorf("send DTMF %c: %w", d, err)
		}
	}
	return nil
}

// sendInfoDigit sends one digit in a SIP INFO within the dialog (RFC 6086)
// as application/dtmf-relay, the de facto format no RFC registers.
func (c *phoneCall) sendInfoDigit(ctx context.Context, d rune) error {
	target := c.dialog.InviteRequest.Recipient
	if ct := c.dialog.InviteResponse.Contact(); ct != nil {
		target = ct.Address
	}
	req := sip.NewRequest(sip.INFO, *target.Clone())
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dtmf-relay"))
	req.SetBody(fmt.Appendf(nil, "Signal=%c\r\nDuration=%d\r\n", d, digitTone.Milliseconds()))
	res, err := c.dialog.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("send INFO with DTMF %c: %w", d, err)
	}
	if !res.IsSuccess() {
		return fmt.Errorf("INFO with DTMF %c: %s", d, statusLine(res))
	}
	return nil
}

// WaitForPause waits until the far end has been quiet for promptPause
// since the answer or its last sound, for at most limit.
func (c *phoneCall) WaitForPause(ctx context.Context, limit time.Duration) error {
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

// Heard is how much audio the far end has sent.
func (c *phoneCall) Heard() time.Duration {
	return time.Duration(c.frames.Load()) * media.FrameSamples * time.Second / media.SampleRate
}

// Hangup sends BYE, unless the far end already hung up.
func (c *phoneCall) Hangup(ctx context.Context) error {
	defer c.end()
	if err := c.dialog.Bye(ctx); err != nil {
		return fmt.Errorf("send BYE: %w", err)
	}
	return nil
}

// Ended is closed once either side has hung up.
func (c *phoneCall) Ended() <-chan struct{} { return c.ended }

func (c *phoneCall) end() { c.endOnce.Do(func() { close(c.ended) }) }

// Close stops the call's media and forgets its dialog. It does not hang up.
func (c *phoneCall) Close() {
	if c.stopMedia != nil {
		c.stopMedia()
	}
	c.media.Close()
	c.running.Wait()
	c.p.calls.Delete(c.dialog.ID)
	c.dialog.Close()
}

// callPlan is one call of the softphone: where it goes, and what the
// softphone does once it is answered.
type callPlan struct {
	Target  sip.Uri
	Dest    string // host:port the INVITE is sent to
	Headers []sip.Header
	// Play, if set, is played once the call is answered; PlayName names
	// it in the events.
	Play     []int16
	PlayName string
	// DTMF are pressed DTMFDelay after the answer, or once the far end's
	// prompt is over if it is still playing then; by SIP INFO if InfoDTMF.
	DTMF      string
	DTMFDelay time.Duration
	InfoDTMF  bool
	// HangupAfter, if set, hangs up that long after the answer; else the
	// softphone waits for the far end's BYE.
	HangupAfter time.Duration
	// Timeout bounds the whole call, ringing included.
	Timeout time.Duration
}

// callReport is how a call went.
type callReport struct {
	Answered bool
	Answer   string // "200 OK (PCMU)"
	// HandedBack is set when the far end hung up with a BYE.
	HandedBack bool
	// ReferTo is the Refer-To of the REFER the far end handed back with.
	ReferTo string
	// End says how the call ended, for people.
	End string
	// Err is why the call did not go as planned; nil when it was answered
	// and ended by the far end's BYE or by HangupAfter.
	Err      error
	Duration time.Duration // from the answer to the end
	Stats    media.Stats
	// Heard is the audio the far end sent, HeardBeforeDigits the part of
	// it heard before the first digit was pressed.
	Heard, HeardBeforeDigits time.Duration
	DigitsSent               bool
	Recording                []int16
}

// Call places one call as plan says and reports how it went.
func (p *softphone) Call(ctx context.Context, plan callPlan) *callReport {
	ctx, cancel := context.WithTimeoutCause(ctx, plan.Timeout, fmt.Errorf("the time limit of %s passed", plan.Timeout))
	defer cancel()
	p.events.reset()
	r := &callReport{}
	via := ""
	if plan.Dest != uriHostPort(plan.Target) {
		via = " via " + plan.Dest
	}
	p.events.printf("calling %s%s over %s", plan.Target.String(), via, p.opts.Transport)
	c, err := p.Dial(ctx, plan.Target, plan.Dest, plan.Headers...)
	if err != nil {
		var refused *callRefused
		if errors.As(err, &refused) {
			r.End = "refused with " + statusLine(refused.Res)
		} else {
			r.End = err.Error()
		}
		r.Err = err
		return r
	}
	r.Answered, r.Answer = true, c.Answer

	callCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var digitsErr error
	if plan.Play != nil {
		wg.Go(func() {
			p.events.printf("playing %s (%.1f s)", plan.PlayName, float64(len(plan.Play))/media.SampleRate)
			if c.Play(callCtx, plan.Play) == nil {
				p.events.printf("played %s", plan.PlayName)
			}
		})
	}
	if plan.DTMF != "" {
		wg.Go(func() {
			if sleepCtx(callCtx, plan.DTMFDelay) != nil || c.WaitForPause(callCtx, promptWait) != nil {
				return
			}
			r.HeardBeforeDigits, r.DigitsSent = c.Heard(), true
			if err := c.SendDigits(callCtx, plan.DTMF, plan.InfoDTMF); err != nil && callCtx.Err() == nil {
				p.events.printf("DTMF failed: %v", err)
				digitsErr = err
			}
		})
	}
	var hangup <-chan time.Time
	if plan.HangupAfter > 0 {
		t := time.NewTimer(plan.HangupAfter)
		defer t.Stop()
		hangup = t.C
	}

	select {
	case <-c.Ended():
		r.HandedBack = true
		r.End = "BYE from the far end (the call was handed back)"
		c.mu.Lock()
		if r.ReferTo = c.referTo; r.ReferTo != "" {
			r.End = "REFER to " + r.ReferTo + ", then BYE from the far end (the call was handed back)"
		}
		c.mu.Unlock()
	case <-hangup:
		r.End = fmt.Sprintf("we hung up after %s (--hangup-after)", plan.HangupAfter)
	case <-ctx.Done():
		r.Err = fmt.Errorf("no BYE from the far end: %w", context.Cause(ctx))
		if errors.Is(ctx.Err(), context.Canceled) {
			r.Err = errors.New("interrupted")
		}
		r.End = fmt.Sprintf("we hung up: %v", r.Err)
	}
	stop()
	wg.Wait()
	if !r.HandedBack {
		bye, done := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.Hangup(bye); err != nil {
			p.events.printf("%v", err)
		} else {
			p.events.printf("sent BYE")
		}
		done()
	}
	c.Close()
	if r.Err == nil {
		r.Err = digitsErr
	}
	r.Duration = time.Since(c.answered)
	r.Stats = c.media.Stats()
	r.Heard = c.Heard()
	r.Recording = c.rec.PCM()
	return r
}

// print writes the summary of the call, naming the recording if saved.
func (r *callReport) print(w io.Writer, recording string) {
	fmt.Fprintf(w, "\ncall ended: %s\n", r.End)
	if !r.Answered {
		return
	}
	fmt.Fprintf(w, "answer:     %s\n", r.Answer)
	fmt.Fprintf(w, "duration:   %.2f s from the answer\n", r.Duration.Seconds())
	fmt.Fprintf(w, "RTP:        %d packets sent, %d received\n", r.Stats.PacketsSent, r.Stats.PacketsReceived)
	level := rms(r.Recording)
	verdict := "silent"
	if level > silenceRMS {
		verdict = "not silent"
	}
	fmt.Fprintf(w, "audio:      %.2f s received, RMS %.0f (%s)\n", r.Heard.Seconds(), level, verdict)
	if recording != "" {
		fmt.Fprintf(w, "recording:  %s\n", recording)
	}
}

// rms is the root mean square of pcm, on the 16-bit scale.
func rms(pcm []int16) float64 {
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

// eventLog prints a call's events, one a line, with the time since the
// call began. It is safe for concurrent use.
type eventLog struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (l *eventLog) reset() {
	l.mu.Lock()
	l.start = time.Now()
	l.mu.Unlock()
}

func (l *eventLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%6.2fs  %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}
