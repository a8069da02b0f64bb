package sip

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The gate stands between the transports and sipgo's transaction layer.
// Every message is read by it first; it lets through only what Switchback
// must keep state for, and answers the rest itself, as a stateless UAS
// (RFC 3261 §8.2.7): one response, no 100 Trying, no retransmission, no
// transaction, and nothing remembered about the sender. That is how RFC
// 3261 §26.1.5 asks a UAS to treat unauthenticated requests, since a
// transaction kept for each of them is a denial of service, and a
// retransmitted answer to a forged source address a reflection attack.
//
// Let through to sipgo:
//
//   - everything from an address in some allowlist (a known peer);
//   - a new INVITE whose digest credentials prove the password (a nonce
//     this store signed, unexpired, and the right response): sipgo then
//     claims the nonce (each is used once, on whichever node) and the
//     call goes on as RFC 3261 has it, with a transaction;
//   - a request in a dialog this node holds, and the ACKs, CANCELs and
//     responses of addresses that were let through lately (peerWindow).
//
// Answered here: a challenge (401) or refusal (403, 400, 503) to a new
// INVITE that needs credentials it does not prove, 404 to one addressed
// to nobody, 481 to a request in a dialog nobody holds, 200 to OPTIONS,
// and 403 to anything else. Each answer goes to the packet's source and
// leaves out what it need not say (a second challenge, the capabilities
// of a 200 to OPTIONS) rather than be larger than the request; each source
// address gets at most answerRate answers a second (answerBurst at once),
// and the rest are dropped. Stray ACKs and
// CANCELs are ignored, as §8.2.7 asks. Messages that do not parse are
// dropped, and logged at most once per source per parseLogInterval.
//
// Over UDP the gate is sipgo's read filter; over TCP and TLS it reads
// each connection (gatedConn) and frames the stream with sipgo's own
// parser.

// Refusal reasons: the values of the reason label of
// switchback_sip_requests_refused_total.
const (
	ReasonChallenged  = "challenged"   // 401 with a challenge
	ReasonForbidden   = "forbidden"    // 403: source or credentials not allowed
	ReasonMalformed   = "malformed"    // 400, 416, 420, 505: the request is not one to act on
	ReasonNotFound    = "not_found"    // 404: addressed to no tenant and no number
	ReasonNoDialog    = "no_dialog"    // 481: in a dialog no call holds
	ReasonMethod      = "method"       // 405: a method Switchback does not take
	ReasonUnavailable = "unavailable"  // 503: the store could not be read
	ReasonRateLimited = "rate_limited" // dropped: its source had used up its answers
	ReasonUnparsable  = "unparsable"   // dropped: not a SIP message
	ReasonStray       = "stray"        // dropped: an ACK, CANCEL or response that belongs to nothing
)

// RefusalReasons lists every reason Refused counts.
var RefusalReasons = []string{ReasonChallenged, ReasonForbidden, ReasonMalformed, ReasonNotFound,
	ReasonNoDialog, ReasonMethod, ReasonUnavailable, ReasonRateLimited, ReasonUnparsable, ReasonStray}

// reasonFor names the refusal a status code stands for.
func reasonFor(code int) string {
	switch code {
	case 401:
		return ReasonChallenged
	case 403:
		return ReasonForbidden
	case 404:
		return ReasonNotFound
	case 405:
		return ReasonMethod
	case 481:
		return ReasonNoDialog
	case 503:
		return ReasonUnavailable
	}
	return ReasonMalformed
}

const (
	// answerRate and answerBurst bound the stateless answers one source
	// address gets: enough for any caller that is challenged once per
	// call, far below what a reflection attack needs. A source that sends
	// more calls than this should be in an allowlist.
	answerRate  = 100
	answerBurst = 200
	// parseLogInterval is how often one source may have a message that
	// does not parse logged; parseLogRate and parseLogBurst bound such
	// lines from all sources together.
	parseLogInterval = 10 * time.Second
	parseLogRate     = 2
	parseLogBurst    = 10
	// gateTimeout bounds the one store read the gate may make: the nonce
	// key, the first time a node checks credentials.
	gateTimeout = 2 * time.Second
)

// Refused returns how many requests were refused, or messages dropped, for
// reason (one of RefusalReasons), by the gate or by authentication after
// it.
func (e *Edge) Refused(reason string) int64 {
	if c, ok := e.refused[reason]; ok {
		return c.Load()
	}
	return 0
}

// Transactions returns how many requests were given a server transaction:
// those the gate let through.
func (e *Edge) Transactions() int64 { return e.transactions.Load() }

// UDPPoolEntries returns how many remote addresses sipgo's UDP transport
// keeps in its connection pool, its own listening socket included.
func (e *Edge) UDPPoolEntries() int {
	if e.peers.pool == nil {
		return 0
	}
	return e.peers.pool.Size()
}

func (e *Edge) count(reason string) {
	if c, ok := e.refused[reason]; ok {
		c.Add(1)
	}
}

// counted wraps a request handler to count the transactions it serves.
func (e *Edge) counted(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		e.transactions.Add(1)
		h(req, tx)
	}
}

// onUnknownMethod answers a method no handler takes, from a known peer
// (RFC 3261 §8.2.1: with the methods Switchback takes).
func (e *Edge) onUnknownMethod(req *sip.Request, tx sip.ServerTransaction) {
	respond(tx, req, 405, "Method Not Allowed", sip.NewHeader("Allow", allowed))
}

// passage is what the gate decided about one message.
type passage struct {
	pass   bool
	reply  []byte // the stateless answer to send, when not let through
	dialog string // the dialog a message let through belongs to, if known
}

// gate decides about msg, which came from `from` over transport ("UDP",
// "TCP" or "TLS"); size is its length on the wire.
func (e *Edge) gate(msg sip.Message, size int, from netip.AddrPort, transport string) passage {
	ip := from.Addr().Unmap()
	stream := transport != "UDP"
	addr := from.String()
	if res, ok := msg.(*sip.Response); ok {
		if e.knownSource(ip) || stream || e.peers.has(addr) || e.knownResponseDialog(res) {
			return passage{pass: true}
		}
		e.count(ReasonStray)
		return passage{}
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		e.count(ReasonUnparsable)
		return passage{}
	}
	if e.knownSource(ip) {
		id, _ := e.knownDialog(req)
		return passage{pass: true, dialog: id}
	}
	if id, ok := e.knownDialog(req); ok {
		// Whoever the other end of a call is, wherever it sends from.
		return passage{pass: true, dialog: id}
	}
	req.SetSource(addr)
	req.SetTransport(transport)
	if req.IsAck() || req.IsCancel() {
		// A stateless UAS ignores ACK and CANCEL (RFC 3261 §8.2.7): only
		// those of transactions under way go on.
		if stream || e.peers.has(addr) {
			return passage{pass: true}
		}
		e.count(ReasonStray)
		return passage{}
	}
	tx := &statelessTx{}
	switch {
	case !e.openToAll:
		// Only allowlists: an unknown source may do nothing else.
		respond(tx, req, 403, "Forbidden")
	case hasToTag(req):
		if req.Method == sip.OPTIONS {
			e.onOptions(req, tx)
		} else if validate(req, tx) {
			respond(tx, req, 481, "Call/Transaction Does Not Exist")
		}
	case req.Method == sip.INVITE:
		if e.gateInvite(req, ip, tx) {
			return passage{pass: true}
		}
	case req.Method == sip.OPTIONS:
		e.onOptions(req, tx)
	case req.Method == sip.BYE, req.Method == sip.INFO, req.Method == sip.UPDATE, req.Method == sip.NOTIFY:
		if validate(req, tx) {
			respond(tx, req, 481, "Call/Transaction Does Not Exist")
		}
	default:
		// A method Switchback does not take, from a source it does not
		// know: refused before the method is looked at (RFC 3261 §8.2:
		// authentication first), so without an Allow list to send.
		respond(tx, req, 403, "Forbidden")
	}
	if tx.res == nil {
		return passage{}
	}
	if !e.answers.allow(ip, e.now()) {
		e.count(ReasonRateLimited)
		return passage{}
	}
	if tx.res.StatusCode >= 300 {
		e.count(reasonFor(tx.res.StatusCode))
	}
	return passage{reply: statelessReply(req, tx.res, size)}
}

// gateInvite decides about a new INVITE from an address no allowlist has:
// it reports whether the INVITE may go on, else answers it on tx. The
// checks are onInvite's, in its order, but credentials are only checked,
// not used up: that is for the transaction that follows.
func (e *Edge) gateInvite(req *sip.Request, ip netip.Addr, tx *statelessTx) bool {
	if !validate(req, tx) {
		return false
	}
	a, found := e.accessFor(req, ip)
	if !found {
		respond(tx, req, 404, "Not Found")
		return false
	}
	if a == nil {
		respond(tx, req, 403, "Forbidden")
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), gateTimeout)
	defer cancel()
	r, ok := e.authenticate(ctx, a, req, ip, false)
	if ok {
		return true
	}
	respond(tx, req, r.code, r.reason, r.headers...)
	return false
}

// statelessReply is res as sent by a stateless UAS in answer to req, which
// was size bytes long. Its To tag, when req has none, is the same for the
// same request (RFC 3261 §8.2.7), so a retransmitted request gets the same
// answer. While the answer is larger than the request, it loses what it
// need not carry: challenges after the first (a client answers one), then
// the Supported, Accept and Allow of a 200 (RFC 3261 §11.2 says SHOULD).
// An answer is thus no way to send more than was received, but for a
// request smaller than the one challenge or the few headers every answer
// echoes.
func statelessReply(req *sip.Request, res *sip.Response, size int) []byte {
	res.SipVersion = "SIP/2.0"
	if to := res.To(); to != nil && !hasToTag(req) {
		to.Params.Add("tag", statelessTag(req))
	}
	out := res.String()
	for _, optional := range []string{"WWW-Authenticate", "Supported", "Accept", "Allow"} {
		if len(out) <= size {
			break
		}
		hs := res.GetHeaders(optional)
		keep := 0
		if optional == "WWW-Authenticate" {
			keep = 1
		} else if res.StatusCode >= 300 {
			continue // required in a 405, for one
		}
		if len(hs) <= keep {
			continue
		}
		res.RemoveHeader(optional)
		for _, h := range hs[:keep] {
			res.AppendHeader(h)
		}
		out = res.String()
	}
	return []byte(out)
}

// statelessTag is the To tag of a stateless answer to req: a digest of
// what identifies the request (RFC 3261 §19.3).
func statelessTag(req *sip.Request) string {
	h := sha256.New()
	h.Write([]byte(callID(req)))
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		h.Write([]byte{0})
		h.Write([]byte(tag))
	}
	if v := req.Via(); v != nil {
		branch, _ := v.Params.Get("branch")
		h.Write([]byte{0})
		h.Write([]byte(branch))
	}
	if c := req.CSeq(); c != nil {
		h.Write([]byte{0})
		h.Write([]byte(c.Value()))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// unmapped is ap with an IPv4 address in IPv6 form made IPv4, so it
// prints as sipgo prints the address of a datagram.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func hasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

// knownDialog reports whether req belongs to a dialog this node holds (a
// call, or a call's return leg), and its id.
func (e *Edge) knownDialog(req *sip.Request) (string, bool) {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return "", false
	}
	_, ok := e.dialogs.Load(id)
	return id, ok
}

// knownResponseDialog reports whether res answers a request Switchback
// sent in a dialog it holds.
func (e *Edge) knownResponseDialog(res *sip.Response) bool {
	from, to, id := res.From(), res.To(), res.CallID()
	if from == nil || to == nil || id == nil {
		return false
	}
	local, _ := from.Params.Get("tag")
	remote, _ := to.Params.Get("tag")
	_, ok := e.dialogs.Load(sip.DialogIDMake(id.Value(), local, remote))
	return ok
}

// statelessTx takes the answer of a handler that answers a request
// outright (validate, respond, onOptions) so the gate can send it without
// a transaction. The first response given is kept.
type statelessTx struct{ res *sip.Response }

// Respond keeps res, if it is the first response.
func (t *statelessTx) Respond(res *sip.Response) error {
	if t.res == nil {
		t.res = res
	}
	return nil
}

// Acks returns nil: no ACK comes to a stateless answer.
func (t *statelessTx) Acks() <-chan *sip.Request { return nil }

// OnCancel returns false: there is nothing to cancel.
func (t *statelessTx) OnCancel(sip.FnTxCancel) bool { return false }

// Terminate does nothing.
func (t *statelessTx) Terminate() {}

// OnTerminate returns false, as for a transaction already ended.
func (t *statelessTx) OnTerminate(sip.FnTxTerminate) bool { return false }

// Done returns a closed channel.
func (t *statelessTx) Done() <-chan struct{} { return closed }

// Err returns nil.
func (t *statelessTx) Err() error { return nil }

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// readFilter is the gate over UDP: sipgo calls it with every datagram
// before parsing it. Returning an error would stop the listener: never do.
func (e *Edge) readFilter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if !strings.EqualFold(props.Transport, "udp") {
		return data, nil // streams are gated by gatedConn
	}
	ra, ok := props.RemoteAddr.(*net.UDPAddr)
	if !ok {
		return data, nil
	}
	if len(data) <= 4 && len(trimCRLF(data)) == 0 {
		return data, nil // a keep-alive (RFC 5626 §3.5.1), which sipgo ignores
	}
	from := unmapped(ra.AddrPort())
	listener := props.LocalAddr != nil && props.LocalAddr.String() == e.udpAddr
	msg, err := sip.ParseMessage(data)
	if err != nil {
		e.unparsable(from, "UDP", data, err)
		return nil, nil
	}
	if _, isRes := msg.(*sip.Response); isRes && !listener {
		// Answers to a request Switchback sent from a socket of its own.
		return data, nil
	}
	p := e.gate(msg, len(data), from, "UDP")
	switch {
	case p.pass:
		if listener {
			e.peers.saw(from.String(), p.dialog, e.now())
		}
		return data, nil
	case p.reply != nil:
		e.udp.WriteTo(p.reply, ra)
	}
	return nil, nil
}

// unparsable drops a message that is not SIP, and says so in the log
// (escaped and cut short) unless its source was logged lately.
func (e *Edge) unparsable(from netip.AddrPort, transport string, data []byte, err error) {
	e.count(ReasonUnparsable)
	ok, held := e.parseLog.allow(from.Addr().Unmap(), e.now())
	if !ok {
		return
	}
	e.log.Warn("sip message dropped: it does not parse", "from", from.String(), "transport", transport,
		"bytes", len(data), "err", escapeBytes(err.Error(), maxLoggedBytes),
		"data", escapeBytes(data, maxLoggedBytes), "suppressed", held)
}

// peerWindow is how long an address stays a peer after the gate last let
// a message of it through (a call's peers stay while the call lasts): as
// long as an INVITE server transaction may wait for its ACK (64*T1, RFC
// 3261 §17.2.1).
const peerWindow = 64 * 500 * time.Millisecond

// maxPeers bounds the peers a node remembers. Past it, new peers are let
// through unremembered (only authenticated and allowlisted addresses are
// peers) and their entries in sipgo's pool stay until the listener closes.
const maxPeers = 1 << 16

// peerTable is the UDP addresses the gate let messages through from, and
// when. sipgo's UDP transport keeps each source address it reads a message
// from in its connection pool, for good; the table removes from the pool
// those that have been quiet for a window and hold no call, so the pool
// stays bounded by the peers of the last window and the calls up. (sipgo's
// read loop also notes each such address in a set of its own, a few dozen
// bytes each, that only closing the listener clears: it grows with the
// distinct addresses of authenticated and allowlisted peers, never with
// anyone else's.)
type peerTable struct {
	window time.Duration
	max    int
	pool   *sip.ConnectionPool // sipgo's UDP pool, once listening

	mu   sync.Mutex
	m    map[string]peer
	last string // the address of the last datagram let through
}

type peer struct {
	seen   time.Time
	dialog string // a dialog of the peer's that this node holds, if any
}

func newPeerTable() *peerTable {
	return &peerTable{window: peerWindow, max: maxPeers, m: map[string]peer{}}
}

// saw records that a datagram from addr was let through at now.
func (p *peerTable) saw(addr, dialog string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = addr
	old, ok := p.m[addr]
	if !ok && len(p.m) >= p.max {
		return
	}
	if dialog == "" {
		dialog = old.dialog
	}
	p.m[addr] = peer{seen: now, dialog: dialog}
}

// has reports whether addr is a peer.
func (p *peerTable) has(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.m[addr]
	return ok
}

// prune forgets the peers quiet since before now-window whose dialog, if
// any, live no longer reports, and removes them from sipgo's pool. The
// address sipgo read last stays: it adds an address to its pool only when
// a datagram comes from another than the one before.
func (p *peerTable) prune(now time.Time, live func(dialog string) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := now.Add(-p.window)
	for addr, e := range p.m {
		if addr == p.last || !e.seen.Before(cutoff) || e.dialog != "" && live(e.dialog) {
			continue
		}
		delete(p.m, addr)
		if p.pool != nil {
			p.pool.Delete(addr)
		}
	}
}

// prunePeers prunes the peer table every quarter window until ctx ends.
func (e *Edge) prunePeers(ctx context.Context) {
	every := max(e.peers.window/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	live := func(dialog string) bool {
		_, ok := e.dialogs.Load(dialog)
		return ok
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.peers.prune(e.now(), live)
		}
	}
}

// expectAnswers lets through the answers to a request Switchback sends
// outside any dialog it holds yet (the return INVITE of a hand-back): its
// destination becomes a peer for a window, whatever the allowlists say.
func (e *Edge) expectAnswers(ctx context.Context, target sip.Uri) {
	port := target.Port
	if port == 0 {
		port = 5060
	}
	ips := []netip.Addr{}
	if ip, err := netip.ParseAddr(strings.Trim(target.Host, "[]")); err == nil {
		ips = append(ips, ip)
	} else if found, err := net.DefaultResolver.LookupNetIP(ctx, "ip", target.Host); err == nil {
		ips = found
	}
	for _, ip := range ips {
		e.peers.saw(netip.AddrPortFrom(ip.Unmap(), uint16(port)).String(), "", e.now())
	}
}
