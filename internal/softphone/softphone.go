// Package softphone is a SIP user agent that places calls, for trying and
// testing Switchback: `switchback call` and `switchback demo`, the tests,
// and the benchmarks use it.
//
// A Phone is one sipgo user agent on one local address; it places any
// number of calls at once. Dial places one call and returns once it is
// answered, with its G.711 media flowing (or, with DialOptions.RTP, left to
// the caller); the Call then plays audio, presses digits by RFC 4733 or SIP
// INFO, hears and records what the far end sends, takes the far end's BYE
// and REFER, and hangs up. Run does all of it from a Plan and returns a
// Report of what happened.
//
// Every blocking method takes a context first. A Call's goroutines end by
// its Close, a Phone's by its Close.
package softphone

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback/internal/media"
)

// DefaultName is the User-Agent of a Phone, and the user part of its
// Contact, unless Options.Name says otherwise.
const DefaultName = "switchback-call"

// Options are what a Phone is built from. The zero Options make a phone on
// 127.0.0.1 over UDP, with RTP on any free port.
type Options struct {
	// LocalIP is where SIP and RTP bind; 127.0.0.1 if unset.
	LocalIP netip.Addr
	// RTPPorts are the UDP ports RTP binds; the zero range takes any
	// free port.
	RTPPorts media.PortRange
	// Transport is "udp" (the default) or "tcp", in any case.
	Transport string
	// Name is the User-Agent header and the user of the Contact;
	// DefaultName if empty.
	Name string
	// SocketBuffer, if positive, sets the receive and send buffers of
	// the SIP socket over UDP, in bytes (for many calls at once).
	SocketBuffer int
	// Events receives one line per event of each call, with the time
	// since the call began; nil discards them.
	Events io.Writer
	// Log receives sipgo's own warnings; nil discards them.
	Log *slog.Logger
}

// Phone places calls: one sipgo UserAgent whose client sends the INVITEs
// and whose server takes the far end's requests within the calls (its BYE,
// REFER and INFO). It is safe for concurrent use.
type Phone struct {
	opts      Options
	transport string         // "UDP" or "TCP"
	udp       net.PacketConn // the UDP port it listens on, over UDP
	ua        *sipgo.UserAgent
	served    chan struct{} // closed once it no longer serves udp
	dialogUA  *sipgo.DialogUA
	calls     sync.Map // dialog id -> *Call

	eventsMu sync.Mutex // one event line at a time on opts.Events
}

// New starts a phone. Over UDP it listens on a port of its own, as a phone
// does, and sends from it: the Contact names it and the far end's
// requests come back to it. Over TCP requests go on a connection the
// transport layer opens, which the far end's requests come back on.
func New(o Options) (*Phone, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if !o.LocalIP.IsValid() {
		o.LocalIP = netip.MustParseAddr("127.0.0.1")
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	p := &Phone{opts: o, served: make(chan struct{})}
	switch strings.ToUpper(o.Transport) {
	case "", "UDP":
		p.transport = "UDP"
	case "TCP":
		p.transport = "TCP"
	default:
		return nil, fmt.Errorf("softphone: transport %q is not udp or tcp", o.Transport)
	}
	host := o.LocalIP.String()
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(o.Name),
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
	p.ua = ua
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(o.Log))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("softphone: %w", err)
	}
	srv.OnBye(p.onBye)
	srv.OnRefer(p.onRefer)
	srv.OnInfo(p.onInfo)
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})

	connAddr := net.JoinHostPort(host, "0")
	if p.transport == "UDP" {
		p.udp, err = net.ListenPacket("udp", connAddr)
		if err != nil {
			ua.Close()
			return nil, fmt.Errorf("softphone: %w", err)
		}
		if uc, ok := p.udp.(*net.UDPConn); ok && o.SocketBuffer > 0 {
			uc.SetReadBuffer(o.SocketBuffer)
			uc.SetWriteBuffer(o.SocketBuffer)
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

// Transport is the phone's transport, "UDP" or "TCP".
func (p *Phone) Transport() string { return p.transport }

// Addr is the UDP address the phone listens on, or nil over TCP.
func (p *Phone) Addr() net.Addr {
	if p.udp == nil {
		return nil
	}
	return p.udp.LocalAddr()
}

// Close ends the phone's transports. Close its calls first: it does not
// hang them up.
func (p *Phone) Close() error {
	err := p.ua.Close()
	if p.udp != nil {
		p.udp.Close() // the transport layer leaves its listeners to their owner
	}
	<-p.served
	return err
}

// call finds the call a request from the far end belongs to, or answers
// 481 (RFC 3261 §12.2.2) and returns nil.
func (p *Phone) call(req *sip.Request, tx sip.ServerTransaction) *Call {
	id, err := sip.DialogIDFromRequestUAC(req)
	v, ok := p.calls.Load(id)
	if err != nil || !ok {
		tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return nil
	}
	return v.(*Call)
}

// onBye is the far end hanging up: for Switchback, handing the call back.
func (p *Phone) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if c := p.call(req, tx); c != nil {
		c.readBye(req, tx)
	}
}

// onRefer is the far end handing the call back by a blind transfer.
func (p *Phone) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	if c := p.call(req, tx); c != nil {
		c.readRefer(req, tx)
	}
}

// onInfo takes a digit by SIP INFO (RFC 6086, application/dtmf-relay).
func (p *Phone) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	if c := p.call(req, tx); c != nil {
		c.readInfo(req, tx)
	}
}

// eventLog prints a call's events, one a line, with the time since the
// call began. It is safe for concurrent use.
type eventLog struct {
	p     *Phone
	start time.Time
}

func (p *Phone) newEventLog() *eventLog { return &eventLog{p: p, start: time.Now()} }

func (l *eventLog) printf(format string, args ...any) {
	w := l.p.opts.Events
	if w == nil {
		return
	}
	line := fmt.Sprintf("%6.2fs  %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
	l.p.eventsMu.Lock()
	defer l.p.eventsMu.Unlock()
	io.WriteString(w, line)
}
