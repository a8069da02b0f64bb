// Package sip is Switchback's SIP edge: the signalling of its calls. It
// listens on UDP, TCP and TLS, authenticates who calls (IP allowlists and
// digest), matches each new call to its transfer through the call runtime
// (internal/call), answers it, and carries out what the runtime decides:
// play and hear media, hang up, hand back by REFER or by a new INVITE.
//
// It is built on github.com/emiago/sipgo. The files split it by concern:
// edge.go (listening, OPTIONS), gate.go and stream.go (the stateless gate
// in front of sipgo's transactions), limit.go (per-source budgets in fixed
// memory), liblog.go (sipgo's own log lines), auth.go (who may call), inbound.go (a new
// INVITE to its answer), leg.go (one dialog with its media: the caller's
// leg and the return leg alike, their offer/answer), timer.go (RFC 4028
// session timers), info.go (DTMF by INFO), dialogs.go (routing in-dialog
// requests to their leg), refer.go and invite.go (the REFER and INVITE
// hand-backs), bridge.go (the caller bridged to the return leg), errors.go
// (domain errors as SIP responses).
package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchback/switchback"
	"github.com/switchback/switchback/internal/call"
	"github.com/switchback/switchback/internal/config"
	"github.com/switchback/switchback/internal/media"
	"github.com/switchback/switchback/internal/sip/digest"
	"github.com/switchback/switchback/internal/transfer"
)

// Options are what an Edge is built from.
type Options struct {
	Config    config.Config
	Transfers *transfer.Service
	Nonces    switchback.NonceStore
	Agents    switchback.AgentFactory
	// Calls is the call runtime the edge gives its calls to; nil makes
	// one from Transfers and Agents, which the edge then owns.
	Calls *call.Runtime
	Log   *slog.Logger
	// Answered, when set, is told for each call answered how long its
	// INVITE waited for the 200 OK: for a latency histogram.
	Answered func(time.Duration)
}

// Edge is the SIP side of Switchback.
type Edge struct {
	cfg     config.SIP
	svc     *transfer.Service
	calls   *call.Runtime
	log     *slog.Logger
	auth    *digest.Authenticator
	tenants map[string]*tenantAccess // by the user part of their static URI
	// tenantsByID are the same, by tenant id: a PSTN call's tenant is
	// known from the transfer holding the dialled number.
	tenantsByID map[string]*tenantAccess
	trunks      []*access
	// openToAll is set when some tenant or trunk takes digest credentials
	// from any address, so the gate cannot refuse unknown sources outright.
	openToAll bool

	now      func() time.Time
	answers  *sourceLimiter // stateless answers per source address
	parseLog *logLimiter    // log lines about messages that do not parse
	peers    *peerTable     // UDP addresses let through lately
	refused  map[string]*atomic.Int64
	// transactions counts the requests sipgo gave a server transaction.
	transactions atomic.Int64

	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	client   *sipgo.Client
	dialogUA *sipgo.DialogUA

	bind  netip.Addr // the address RTP sockets bind to: the SIP listen address
	host  netip.Addr // the address SDP and Contact advertise
	ports media.PortRange

	udp     net.PacketConn
	udpAddr string // the UDP listener's address, as sipgo writes it
	tcp     net.Listener
	tlsL    net.Listener

	dialogs sync.Map       // dialog id -> *leg: see dialogs.go
	wg      sync.WaitGroup // goroutines the edge starts on its own
	// life ends when Serve stops: what a new INVITE waits for (the
	// match, the agent connecting) ends with it.
	life    context.Context
	endLife context.CancelFunc
	// invites are the new INVITEs being handled, which Serve waits for
	// once it stopped taking them (stopping, under invitesMu).
	invites   sync.WaitGroup
	invitesMu sync.Mutex
	stopping  bool
	// minSE is the smallest session interval taken (RFC 4028 §4).
	minSE time.Duration
	// ringAfter is how long a new call waits for its match and agent
	// before the caller hears ringing.
	ringAfter time.Duration

	answered func(time.Duration) // Options.Answered

	maxPending int64
	pending    atomic.Int64 // new INVITEs not yet answered or refused
	shed       atomic.Int64 // INVITEs refused by the pending limit
}

// New builds an Edge from the configuration. Call Listen, then Serve.
//
// The first call also makes sipgo's process-wide settings (see
// configureLibrary); sipgo lines not logged through the Edge's own loggers
// go to the log of the Edge built last.
func New(o Options) (*Edge, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	configureLibrary()
	h := o.Log.Handler()
	libraryTarget.Store(&h)
	e := &Edge{
		now:        time.Now,
		answers:    newSourceLimiter(answerRate, answerBurst),
		parseLog:   newLogLimiter(parseLogInterval, parseLogRate, parseLogBurst),
		peers:      newPeerTable(),
		refused:    map[string]*atomic.Int64{},
		cfg:        o.Config.SIP,
		svc:        o.Transfers,
		calls:      o.Calls,
		log:        o.Log,
		minSE:      minSE,
		ringAfter:  ringAfter,
		ports:      media.PortRange{Min: o.Config.SIP.RTPPorts.Min, Max: o.Config.SIP.RTPPorts.Max},
		maxPending: int64(o.Config.SIP.MaxPendingInvites),
		answered:   o.Answered,
		auth: &digest.Authenticator{Realm: o.Config.SIP.Realm, Store: o.Nonces,
			NonceTTL: o.Config.SIP.NonceTTL.Duration(), Algorithms: o.Config.SIP.DigestAlgorithms},
	}
	e.life, e.endLife = context.WithCancel(context.Background())
	for _, r := range RefusalReasons {
		e.refused[r] = new(atomic.Int64)
	}
	if err := e.loadAccess(o.Config); err != nil {
		return nil, err
	}
	if e.calls == nil {
		e.calls = call.New(call.Options{Transfers: o.Transfers, Agents: o.Agents, Log: o.Log})
	}
	return e, nil
}

// Listen binds the configured UDP, TCP and TLS addresses. A port of 0 binds
// UDP to a free port and TCP to the same one.
func (e *Edge) Listen() error {
	host, port, err := net.SplitHostPort(e.cfg.Listen)
	if err != nil {
		return fmt.Errorf("sip.listen: %w", err)
	}
	// With port 0 the UDP port is chosen first and TCP must get the same
	// one; another socket may hold it for TCP, so try a few.
	for attempt := 0; ; attempt++ {
		if e.udp, err = net.ListenPacket("udp", e.cfg.Listen); err != nil {
			return fmt.Errorf("sip.listen: %w", err)
		}
		// A burst of requests waits in the socket while the reader is
		// busy; the kernel caps this at net.core.rmem_max.
		e.udp.(*net.UDPConn).SetReadBuffer(udpReadBuffer)
		p := port
		if p == "0" {
			p = strconv.Itoa(e.udp.LocalAddr().(*net.UDPAddr).Port)
		}
		if e.tcp, err = net.Listen("tcp", net.JoinHostPort(host, p)); err == nil {
			break
		}
		e.udp.Close()
		if port != "0" || attempt == 9 {
			return fmt.Errorf("sip.listen (tcp): %w", err)
		}
	}
	if e.cfg.TLS.Listen != "" {
		cert, err := tls.LoadX509KeyPair(e.cfg.TLS.CertFile, e.cfg.TLS.KeyFile)
		if err != nil {
			e.close()
			return fmt.Errorf("sip.tls: %w", err)
		}
		if e.tlsL, err = tls.Listen("tcp", e.cfg.TLS.Listen, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}); err != nil {
			e.close()
			return fmt.Errorf("sip.tls.listen: %w", err)
		}
	}
	local := e.udp.LocalAddr().(*net.UDPAddr)
	e.bind, _ = netip.AddrFromSlice(local.IP)
	e.bind = e.bind.Unmap()
	e.host = e.bind
	if e.cfg.ExternalAddress != "" {
		if a, err := netip.ParseAddr(e.cfg.ExternalAddress); err == nil {
			e.host = a
		}
	}
	if e.host.IsUnspecified() {
		e.host = netip.MustParseAddr("127.0.0.1")
	}

	e.udpAddr = local.String()

	// sipgo logs through Switchback's log, its lines cut, escaped and
	// thinned (liblog.go).
	lib := slog.New(newLibraryHandler(e.log.Handler())).With("component", "sipgo")
	e.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent("Switchback"),
		sipgo.WithUserAgentHostname(e.host.String()),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(e.readFilter), sip.WithTransportLayerLogger(lib)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(lib),
			// A response that matches no transaction (a late
			// retransmission, or anyone's datagram) is dropped.
			sip.WithTransactionLayerUnhandledResponseHandler(func(res *sip.Response) {
				lib.Debug("response matches no transaction", "response", res.StartLine())
			})),
	)
	if err != nil {
		e.close()
		return err
	}
	e.peers.pool = e.ua.TransportLayer().Pool("udp")
	if e.srv, err = sipgo.NewServer(e.ua, sipgo.WithServerLogger(lib)); err != nil {
		e.close()
		return err
	}
	if e.client, err = sipgo.NewClient(e.ua, sipgo.WithClientHostname(e.host.String()), sipgo.WithClientLogger(lib)); err != nil {
		e.close()
		return err
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "switchback", Host: e.host.String(), Port: local.Port}}
	e.dialogUA = &sipgo.DialogUA{Client: e.client, ContactHDR: contact}
	e.srv.OnInvite(e.counted(e.onInvite))
	e.srv.OnOptions(e.counted(e.onOptions))
	for _, m := range []sip.RequestMethod{sip.ACK, sip.BYE, sip.INFO, sip.UPDATE, sip.NOTIFY} {
		e.srv.OnRequest(m, e.counted(e.inDialog))
	}
	e.srv.OnCancel(e.counted(func(req *sip.Request, tx sip.ServerTransaction) {
		// The transaction layer has answered the CANCEL and ended the
		// INVITE; a CANCEL that matched nothing gets 481.
		tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	}))
	e.srv.OnNoRoute(e.counted(e.onUnknownMethod))
	return nil
}

// Addr returns the address SIP is served on (UDP and TCP share it).
func (e *Edge) Addr() netip.AddrPort {
	return e.udp.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TLSAddr returns the TLS listener's address, if there is one.
func (e *Edge) TLSAddr() net.Addr {
	if e.tlsL == nil {
		return nil
	}
	return e.tlsL.Addr()
}

// Serve serves SIP until ctx ends, then stops the call runtime, which ends
// the calls still up (each outcome stored before its BYE goes out), and
// returns once they, the new INVITEs being handled and the edge's own
// goroutines are done. A node that drains lets its calls end first (see
// call.Runtime.Drain) and then ends ctx.
func (e *Edge) Serve(ctx context.Context) error {
	errc := make(chan error, 3)
	go func() { errc <- e.srv.ServeUDP(e.udp) }()
	go func() { errc <- e.srv.ServeTCP(&gatedListener{Listener: e.tcp, e: e, transport: "TCP"}) }()
	if e.tlsL != nil {
		go func() { errc <- e.srv.ServeTLS(&gatedListener{Listener: e.tlsL, e: e, transport: "TLS"}) }()
	}
	pruneCtx, stopPruning := context.WithCancel(ctx)
	pruned := make(chan struct{})
	go func() { defer close(pruned); e.prunePeers(pruneCtx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	e.endLife()
	stopPruning()
	<-pruned
	e.calls.Stop()
	e.wg.Wait()
	// An INVITE matched to its transfer but not yet answered ends as an
	// unanswered call, its outcome stored: its admission and its wait for
	// the ACK end with e.life. It ends while the listeners still serve,
	// so a BYE it sends goes out, from them.
	e.invitesMu.Lock()
	e.stopping = true
	e.invitesMu.Unlock()
	e.invites.Wait()
	e.close()
	if e.ua != nil {
		e.ua.Close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (e *Edge) close() {
	if e.udp != nil {
		e.udp.Close()
	}
	if e.tcp != nil {
		e.tcp.Close()
	}
	if e.tlsL != nil {
		e.tlsL.Close()
	}
}

// udpReadBuffer is the receive buffer asked for the SIP UDP socket.
const udpReadBuffer = 8 << 20

// Shed returns how many new INVITEs were refused because too many were in
// progress (sip.maxPendingInvites).
func (e *Edge) Shed() int64 { return e.shed.Load() }

// tenantURI is a tenant's static SIP URI on this edge, as Referred-By
// names it.
func (e *Edge) tenantURI(tenantID string) string {
	return "sip:" + e.tenantUser(tenantID) + "@" + netip.AddrPortFrom(e.host, e.Addr().Port()).String()
}

// PendingInvites returns how many new INVITEs are in progress.
func (e *Edge) PendingInvites() int64 { return e.pending.Load() }

// ActiveCalls returns how many calls the edge holds.
func (e *Edge) ActiveCalls() int { return e.calls.Active() }

// bindLocal makes req leave from the edge's own socket for its transport
// (RFC 3261 §18.1.1 lets a client pick its source): the UDP listen socket
// itself, or an ephemeral port on the listen address for TCP and TLS, so
// nothing binds beyond the configured addresses and the Via names the
// address an SBC allowlists. A req without a Contact gets the edge's for
// that transport (see contactFor).
func (e *Edge) bindLocal(req *sip.Request, transport string) {
	port := 0
	if transport == "" || strings.EqualFold(transport, "udp") {
		port = int(e.Addr().Port())
	}
	req.Laddr = sip.Addr{IP: e.bind.AsSlice(), Port: port, Hostname: e.bind.String()}
	if req.Contact() == nil {
		req.AppendHeader(e.contactFor(transport))
	}
}

// contactFor is Switchback's Contact in a dialog over transport: the
// listener of that transport, with a transport parameter beyond UDP, so
// that the peer's requests within the dialog come back over the dialog's
// transport (RFC 3261 §12.1.1, §19.1.1). Without it a TCP peer would
// send them over UDP, and a TLS peer over TLS to the TCP listener, where
// they fail.
func (e *Edge) contactFor(transport string) *sip.ContactHeader {
	c := e.dialogUA.ContactHDR.Clone()
	switch strings.ToUpper(transport) {
	case "TCP":
		c.Address.UriParams = sip.HeaderParams{{K: "transport", V: "tcp"}}
	case "TLS":
		if a, ok := e.TLSAddr().(*net.TCPAddr); ok {
			c.Address.Port = a.Port
		}
		c.Address.UriParams = sip.HeaderParams{{K: "transport", V: "tls"}}
	}
	return c
}

// allowed are the methods Switchback takes, as its Allow headers say.
const allowed = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, NOTIFY"

// onOptions answers keep-alive and capability probes. A draining node
// answers 503, so a load balancer that probes (Kamailio's dispatcher)
// stops sending it calls.
func (e *Edge) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if !validate(req, tx) {
		return
	}
	if e.calls.Draining() {
		respond(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", strconv.Itoa(drainRetryAfter)))
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", allowed))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Supported", "timer"))
	tx.Respond(res)
}

// respond sends a final (or provisional) response to req. A response that
// cannot be sent is logged: the peer will retransmit, or give up.
func respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, headers ...sip.Header) error {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.SipVersion = "SIP/2.0"
	for _, h := range headers {
		res.AppendHeader(h)
	}
	err := tx.Respond(res)
	if err != nil {
		slog.Warn("send SIP response", "status", code, "call_id", callID(req), "err", err)
	}
	return err
}

func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}
