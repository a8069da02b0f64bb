package media

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Session is one call leg's RTP stream (RFC 3550) of G.711 audio and
// RFC 4733 telephone-events, over a UDP socket of its own.
//
// Sending: Play paces 20 ms packets against absolute deadlines (a packet
// late by a few milliseconds does not delay the ones after it), numbers
// them from a random start, stamps them at 160 per packet on a clock that
// keeps running through silence, and marks the first packet of each
// talkspurt (RFC 3551 §4.1). Between Plays it sends nothing: no comfort
// noise, which G.711 peers do not need (RFC 3551 §4.1 lets a sender stop
// in silence) and which would cost a packet every 20 ms for every idle
// call.
//
// Receiving: packets are read into one buffer, parsed into one reused
// rtp.Packet, decoded into a ring of frames and handed out on Audio, all
// without allocating. There is no jitter buffer: a packet that arrives
// after a later one is dropped and counted (the agent listens, it does
// not record). Telephone-events become digits on Digits. The Session
// sends to the address in the peer's SDP until the first valid packet
// arrives, then to wherever that came from and takes packets only from
// there (symmetric RTP, RFC 4961, which is how a caller behind NAT is
// reached).
//
// Bridged (see Bridge), a Session relays what it receives to the other
// leg instead of decoding it, and sends what the other leg relays to it.
//
// Time is the wall clock, not an injected one: pacing is real time
// against a real socket.
type Session struct {
	// InactivityTimeout, if positive, makes Inactive close once no RTP
	// has arrived for that long while the direction receives: the peer
	// is gone without a BYE. Set it before Start.
	InactivityTimeout time.Duration

	conn  *net.UDPConn
	rtcp  *net.UDPConn // held, never read; nil for a system-picked port
	local netip.AddrPort

	paramsMu sync.Mutex // serialises setParams; readers just Load
	params   atomic.Pointer[Params]
	dir      atomic.Uint32                  // Direction
	remote   atomic.Pointer[netip.AddrPort] // where packets go: the SDP's, then the latched source
	latchID  atomic.Uint64                  // bumped when the SDP names a new remote: latch again

	audio    chan []int16
	digits   chan rune
	inactive chan struct{}
	dedupe   digitDedupe

	reqs  chan sendRequest
	done  chan error
	abort chan struct{}
	turn  chan struct{} // held by the one Play or SendDigit under way, or by a Bridge
	out   stream        // what the turn's holder sends on

	// relay, while the Session is one leg of a Bridge, takes the packets
	// it receives and sends them on from the other leg.
	relay atomic.Pointer[relay]

	lifeMu  sync.Mutex
	started atomic.Bool
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup

	lastRecv atomic.Int64 // UnixNano of the last packet taken, 0 before one

	stats struct {
		sent, received, dropped, late, lost, ignored, sendLate, ssrcChanges atomic.Uint64
	}
}

// Stats counts what a Session did. All counts start at zero.
type Stats struct {
	// PacketsSent counts RTP packets sent, audio and events.
	PacketsSent uint64
	// PacketsReceived counts RTP packets taken from the peer.
	PacketsReceived uint64
	// Dropped counts 20 ms frames and digits thrown away because their
	// reader did not keep up.
	Dropped uint64
	// PacketsLate counts packets dropped for arriving after a later one,
	// or twice.
	PacketsLate uint64
	// PacketsLost counts the gaps in the peer's sequence numbers.
	PacketsLost uint64
	// PacketsIgnored counts datagrams that are not RTP, come from another
	// source than the latched one, or carry a payload type that was not
	// negotiated (comfort noise, say).
	PacketsIgnored uint64
	// SendLate counts packets sent more than 20 ms after their deadline.
	SendLate uint64
	// SSRCChanges counts the times the peer's stream changed its SSRC
	// (a transfer or a media server switching sources, typically).
	SSRCChanges uint64
}

// ErrClosed is what Play and SendDigit return once the Session is closed.
var ErrClosed = errors.New("rtp: session closed")

var (
	errNotStarted = errors.New("rtp: session not started")
	errAborted    = errors.New("rtp: send aborted")
)

const (
	// maxDatagram is the largest datagram read; a bigger one is cut
	// short, fails to parse, and is ignored.
	maxDatagram = 1500
	// audioQueue is how many 20 ms frames Audio buffers (320 ms).
	audioQueue = 16
	// audioRing is how many frame buffers the receiver cycles through:
	// the queue, the one being filled, and two the reader may still hold.
	audioRing = audioQueue + 3
	// digitQueue is how many digits Digits buffers.
	digitQueue = 32
	// rtpHeaderSize is the fixed header Switchback sends (RFC 3550 §5.1:
	// no CSRC, no extension).
	rtpHeaderSize = 12
	// maxMisorder is how far behind the highest sequence number a
	// packet may be and still count as late rather than as a peer that
	// restarted its numbering (RFC 3550 Appendix A.1 uses 100).
	maxMisorder = 100
	// talkspurtGap is how long after a talkspurt's last frame the next
	// Play may start and still continue it, without a marker.
	talkspurtGap = frameDuration
	// resyncLag is how far behind its deadline the sender may fall
	// (the process stalled) before it stops catching up in a burst and
	// starts afresh from now.
	resyncLag = 200 * time.Millisecond
	// relatchAfter is how long the latched source must have been quiet
	// before another may take its place.
	relatchAfter = 2 * time.Second
)

func newSession(conn, rtcp *net.UDPConn) *Session {
	s := &Session{
		conn:     conn,
		rtcp:     rtcp,
		local:    conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		audio:    make(chan []int16, audioQueue),
		digits:   make(chan rune, digitQueue),
		inactive: make(chan struct{}),
		reqs:     make(chan sendRequest),
		done:     make(chan error, 1),
		abort:    make(chan struct{}, 1),
		turn:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		out:      newStream(),
	}
	return s
}

// LocalAddr returns the address the Session receives RTP on.
func (s *Session) LocalAddr() netip.AddrPort { return s.local }

// Start begins sending and receiving with the negotiated p. It may be
// called once.
func (s *Session) Start(p Params) error {
	if p.Codec != PCMU && p.Codec != PCMA {
		return errors.New("rtp: start: no codec")
	}
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.started.Load() {
		return errors.New("rtp: start: already started")
	}
	s.setParams(p)
	s.started.Store(true)
	s.wg.Add(2)
	go s.sendLoop()
	go s.receiveLoop()
	if s.InactivityTimeout > 0 {
		s.wg.Add(1)
		go s.watchInactivity(s.InactivityTimeout)
	}
	return nil
}

// Update applies new negotiated parameters, from a re-INVITE: codec,
// payload types, direction, and remote address. A new remote address
// undoes the latch: packets go there until the peer's next packet shows
// where it is.
func (s *Session) Update(p Params) {
	s.setParams(p)
}

func (s *Session) setParams(p Params) {
	s.paramsMu.Lock()
	defer s.paramsMu.Unlock()
	old := s.params.Swap(&p)
	s.dir.Store(uint32(p.Direction))
	if old == nil || old.Remote != p.Remote {
		remote := p.Remote
		s.remote.Store(&remote)
		s.latchID.Add(1)
	}
}

// SetDirection changes Switchback's direction (see Params.Direction):
// a Session that does not send stays silent, Play and SendDigit still
// taking their time; one that does not receive drops what arrives.
func (s *Session) SetDirection(d Direction) { s.dir.Store(uint32(d)) }

// Direction returns Switchback's current direction.
func (s *Session) Direction() Direction { return Direction(s.dir.Load()) }

// Remote returns where the Session sends: the peer's SDP address, or the
// source it latched to.
func (s *Session) Remote() netip.AddrPort {
	if r := s.remote.Load(); r != nil {
		return *r
	}
	return netip.AddrPort{}
}

// Audio delivers the peer's audio as 20 ms frames of 8 kHz linear PCM.
// Frames not taken in time are dropped and counted. A frame stays valid
// until two more have been taken: copy it to keep it longer. The channel
// is closed by Close.
func (s *Session) Audio() <-chan []int16 { return s.audio }

// Digits delivers the peer's DTMF digits, from RFC 4733 events and from
// InfoDigit, each once. Digits not taken in time are dropped and counted.
func (s *Session) Digits() <-chan rune { return s.digits }

// Inactive is closed when no RTP has arrived for InactivityTimeout.
func (s *Session) Inactive() <-chan struct{} { return s.inactive }

// LastReceived returns when the last packet was taken from the peer;
// the zero time before the first.
func (s *Session) LastReceived() time.Time {
	if n := s.lastRecv.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Stats returns the Session's counts so far.
func (s *Session) Stats() Stats {
	return Stats{
		PacketsSent:     s.stats.sent.Load(),
		PacketsReceived: s.stats.received.Load(),
		Dropped:         s.stats.dropped.Load(),
		PacketsLate:     s.stats.late.Load(),
		PacketsLost:     s.stats.lost.Load(),
		PacketsIgnored:  s.stats.ignored.Load(),
		SendLate:        s.stats.sendLate.Load(),
		SSRCChanges:     s.stats.ssrcChanges.Load(),
	}
}

// Close stops the Session's goroutines, releases its ports and closes
// Audio. A Play or SendDigit under way returns ErrClosed. It is safe to
// call more than once.
func (s *Session) Close() error {
	s.lifeMu.Lock()
	if s.closed {
		s.lifeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	err := s.conn.Close()
	if s.rtcp != nil {
		s.rtcp.Close()
	}
	started := s.started.Load()
	s.lifeMu.Unlock()
	s.wg.Wait()
	if !started {
		close(s.audio) // else the receiver closed it on its way out
	}
	return err
}

// Play sends pcm, 8 kHz mono linear PCM, as 20 ms packets (the last one
// padded with silence), and returns once the last has gone, or when ctx
// ends. Plays queue behind one another; a Play that starts within 20 ms of
// the previous one's end continues its talkspurt; Plays wait as well while
// the Session is in a Bridge. While the direction
// does not send (the peer holds the call), Play takes as long but sends
// nothing. pcm is read while Play runs and not after.
func (s *Session) Play(ctx context.Context, pcm []int16) error {
	if len(pcm) == 0 {
		return nil
	}
	return s.submit(ctx, sendRequest{pcm: pcm})
}

// SendDigit sends digit as RFC 4733 telephone-events lasting d (see
// DTMFEvents), and returns once the last end packet has gone, or when ctx
// ends. It is an error if telephone-events were not negotiated.
func (s *Session) SendDigit(ctx context.Context, digit rune, d time.Duration) error {
	code, ok := DigitEvent(digit)
	if !ok {
		return fmt.Errorf("rtp: %q is not a DTMF digit", digit)
	}
	if p := s.params.Load(); p == nil || !p.DTMF {
		return errors.New("rtp: telephone-event was not negotiated")
	}
	return s.submit(ctx, sendRequest{digit: true, event: code, frames: dtmfFrames(d)})
}

// sendRequest is one Play or SendDigit for the sender.
type sendRequest struct {
	pcm    []int16
	digit  bool
	event  uint8
	frames int
}

// submit hands req to the sender and waits for it to be sent. The sender
// reads req.pcm in place, so submit returns only once the sender is done
// with it, even when ctx ends first.
func (s *Session) submit(ctx context.Context, req sendRequest) error {
	if !s.started.Load() {
		return errNotStarted
	}
	select { // wait for our turn, behind the Plays queued before
	case s.turn <- struct{}{}:
		defer func() { <-s.turn }()
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
	select {
	case err := <-s.done:
		return err
	case <-ctx.Done():
		s.abort <- struct{}{} // room for it: only the turn's holder sends
		<-s.done
		select { // the sender may have finished without seeing it
		case <-s.abort:
		default:
		}
		return ctx.Err()
	}
}

// sender is the send goroutine's buffers.
type sender struct {
	hdr rtp.Header
	buf [rtpHeaderSize + maxDatagram]byte
	pad [FrameSamples]int16
}

func (s *Session) newSender() *sender {
	return &sender{hdr: rtp.Header{Version: 2}}
}

// stream is the RTP stream a Session sends: one SSRC for the Session's
// life, and sequence numbers and a clock that run on from one sender to
// the next. It has one sender at a time, whoever holds the Session's turn:
// the send goroutine serving a Play or SendDigit, or a Bridge relaying the
// other leg's packets. The far end sees one stream either way.
type stream struct {
	ssrc uint32
	seq  uint16 // the next packet's
	// The clock reads ts0 at t0 (set by the first packet, and moved by a
	// Bridge to the last packet it relayed) and runs at 8 kHz from there,
	// through silence as well (RFC 3550 §5.1).
	ts0 uint32
	t0  time.Time
	// next is the deadline after the last packet's: where a talkspurt
	// goes on.
	next time.Time
	// silent is set when the last slot sent nothing, so the next packet
	// starts a talkspurt.
	silent bool
}

func newStream() stream {
	// RFC 3550 §5.1: random initial sequence number and timestamp, and
	// a random SSRC (§8.1).
	return stream{ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts0: rand.Uint32(), silent: true}
}

// tsAt is the RTP timestamp of audio played out at t.
func (st *stream) tsAt(t time.Time) uint32 {
	if st.t0.IsZero() {
		st.t0 = t
	}
	return st.ts0 + uint32(t.Sub(st.t0).Microseconds()*SampleRate/1e6)
}

func (s *Session) sendLoop() {
	defer s.wg.Done()
	tx := s.newSender()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-s.closing:
			return
		case req := <-s.reqs:
			s.done <- s.serve(tx, timer, req)
		}
	}
}

// serve sends one request's packets, one per 20 ms slot.
func (s *Session) serve(tx *sender, timer *time.Timer, req sendRequest) error {
	out := &s.out
	now := time.Now()
	if out.next.IsZero() || now.Sub(out.next) > talkspurtGap {
		out.next = now
		out.silent = true
	}
	n := (len(req.pcm) + FrameSamples - 1) / FrameSamples
	var eventTS uint32
	if req.digit {
		n = req.frames + 2 // updates, then three end packets
		eventTS = out.tsAt(out.next)
	}
	for i := range n {
		deadline := out.next
		if err := s.waitUntil(timer, deadline); err != nil {
			return err
		}
		if lag := time.Since(deadline); lag > frameDuration {
			s.stats.sendLate.Add(1)
			if lag > resyncLag {
				deadline = time.Now()
			}
		}
		out.next = deadline.Add(frameDuration)
		if req.digit {
			e := dtmfPacket(req.event, req.frames, i)
			s.writeEvent(tx, e, eventTS, i == 0)
			continue
		}
		frame := req.pcm[i*FrameSamples : min((i+1)*FrameSamples, len(req.pcm))]
		s.writeAudio(tx, frame, deadline)
	}
	return nil
}

// waitUntil sleeps until deadline, or returns early if the Session closes
// or the request is aborted.
func (s *Session) waitUntil(timer *time.Timer, deadline time.Time) error {
	d := time.Until(deadline)
	if d <= 0 {
		select {
		case <-s.closing:
			return ErrClosed
		case <-s.abort:
			return errAborted
		default:
			return nil
		}
	}
	timer.Reset(d)
	select {
	case <-timer.C:
		return nil
	case <-s.closing:
		timer.Stop()
		return ErrClosed
	case <-s.abort:
		timer.Stop()
		return errAborted
	}
}

// writeAudio sends one frame of audio played out at deadline; a short
// frame is padded with silence.
func (s *Session) writeAudio(tx *sender, frame []int16, deadline time.Time) {
	if len(frame) < FrameSamples {
		n := copy(tx.pad[:], frame)
		clear(tx.pad[n:])
		frame = tx.pad[:]
	}
	p := s.params.Load()
	n := p.Codec.Encode(tx.buf[rtpHeaderSize:], frame)
	s.writePacket(tx, p.PayloadType, s.out.tsAt(deadline), s.out.silent, n)
}

// writeEvent sends one telephone-event packet (RFC 4733 §2.5.1).
func (s *Session) writeEvent(tx *sender, e DTMFEvent, ts uint32, marker bool) {
	p := s.params.Load()
	n := e.MarshalTo(tx.buf[rtpHeaderSize:])
	s.writePacket(tx, p.DTMFPayloadType, ts, marker, n)
}

// writePacket puts the RTP header before the n payload bytes in tx.buf
// and sends the packet, if the direction sends and there is somewhere to
// send it. Only sent packets take a sequence number.
func (s *Session) writePacket(tx *sender, pt uint8, ts uint32, marker bool, n int) {
	remote := s.remote.Load()
	if !Direction(s.dir.Load()).Sends() || !reachable(remote) {
		s.out.silent = true
		return
	}
	tx.hdr.PayloadType = pt
	tx.hdr.SequenceNumber = s.out.seq
	tx.hdr.Timestamp = ts
	tx.hdr.SSRC = s.out.ssrc
	tx.hdr.Marker = marker
	if _, err := tx.hdr.MarshalTo(tx.buf[:rtpHeaderSize]); err != nil {
		return
	}
	s.out.seq++
	s.out.silent = false
	if _, err := s.conn.WriteToUDPAddrPort(tx.buf[:rtpHeaderSize+n], *remote); err == nil {
		s.stats.sent.Add(1)
	}
}

// reachable reports whether remote is somewhere packets can go: not
// unset, and not the zero address an SDP puts on hold (RFC 3264 §8.4).
func reachable(remote *netip.AddrPort) bool {
	return remote != nil && remote.Port() != 0 && remote.Addr().IsValid() && !remote.Addr().IsUnspecified()
}

// receiver is the receive goroutine's state.
type receiver struct {
	pkt     rtp.Packet
	latchID uint64 // the latch generation latched for; 0: not latched
	source  netip.AddrPort
	ssrc    uint32
	hasSSRC bool
	maxSeq  uint16
	dtmf    DTMFDetector
	frames  [audioRing][FrameSamples]int16
	next    int // the frame being filled
	fill    int // samples in it
}

func newReceiver() *receiver {
	rx := &receiver{}
	rx.pkt.CSRC = make([]uint32, 0, 15)
	rx.pkt.Extensions = make([]rtp.Extension, 0, 8)
	return rx
}

func (s *Session) receiveLoop() {
	defer s.wg.Done()
	defer close(s.audio)
	rx := newReceiver()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-s.closing:
				return
			default:
				continue
			}
		}
		s.receive(rx, buf[:n], from, time.Now())
	}
}

// receive handles one datagram. It is the per-packet path: it must not
// allocate, but for the one time it latches to a new source.
func (s *Session) receive(rx *receiver, b []byte, from netip.AddrPort, now time.Time) {
	if len(b) < rtpHeaderSize || b[0]>>6 != 2 {
		s.stats.ignored.Add(1)
		return
	}
	if err := rx.pkt.Unmarshal(b); err != nil {
		s.stats.ignored.Add(1)
		return
	}
	p := s.params.Load()
	if p == nil {
		return
	}
	isAudio := rx.pkt.PayloadType == p.PayloadType
	isEvent := p.DTMF && rx.pkt.PayloadType == p.DTMFPayloadType

	// Symmetric RTP (RFC 4961): latch to the source of the first packet
	// in a negotiated format, then hear no one else. The peer may move
	// (a NAT binding that changed) without a re-INVITE, so once the
	// latched source has been quiet a while, the next source in a
	// negotiated format takes its place.
	if id := s.latchID.Load(); rx.latchID != id || from != rx.source {
		relatch := rx.latchID != id || now.UnixNano()-s.lastRecv.Load() >= int64(relatchAfter)
		if !relatch || !isAudio && !isEvent {
			s.stats.ignored.Add(1)
			return
		}
		rx.latchID, rx.source = id, from
		remote := new(netip.AddrPort) // the one allocation, once per latch
		*remote = from
		s.remote.Store(remote)
	}
	s.lastRecv.Store(now.UnixNano())
	if !isAudio && !isEvent {
		s.stats.ignored.Add(1)
		return
	}

	// A new SSRC is a new stream: its numbering and clock start afresh.
	seq := rx.pkt.SequenceNumber
	if !rx.hasSSRC || rx.pkt.SSRC != rx.ssrc {
		if rx.hasSSRC {
			s.stats.ssrcChanges.Add(1)
		}
		rx.ssrc, rx.hasSSRC = rx.pkt.SSRC, true
		rx.maxSeq = seq - 1
		rx.dtmf.Reset()
	}
	switch d := int16(seq - rx.maxSeq); {
	case d > 0:
		s.stats.lost.Add(uint64(d - 1))
	case d > -maxMisorder:
		s.stats.late.Add(1)
		return
	default:
		// So far behind it is no late packet: the peer restarted its
		// numbering without a new SSRC (RFC 3550 Appendix A.1).
	}
	rx.maxSeq = seq
	s.stats.received.Add(1)
	if !Direction(s.dir.Load()).Receives() {
		return
	}
	if r := s.relay.Load(); r != nil && r.relay(rx, p, b, isEvent, now) {
		return
	}

	if isEvent {
		if r, ok := rx.dtmf.Feed(rx.pkt.Payload, rx.pkt.Timestamp, rx.pkt.Marker); ok {
			s.deliverDigit(r, fromRTP, now)
		}
		return
	}
	payload := rx.pkt.Payload
	for len(payload) > 0 {
		frame := &rx.frames[rx.next]
		n := p.Codec.Decode(frame[rx.fill:], payload)
		payload = payload[n:]
		rx.fill += n
		if rx.fill < FrameSamples {
			break
		}
		rx.fill = 0
		select {
		case s.audio <- frame[:]:
			rx.next = (rx.next + 1) % audioRing
		default:
			s.stats.dropped.Add(1)
		}
	}
}

// InfoDigit delivers a digit the peer sent in a SIP INFO (see
// ParseInfoDTMF) on Digits. Some gear sends every digit both ways; a digit
// that arrives by INFO within a second of the same digit as an RFC 4733
// event, or the other way round, is taken for the same press and dropped.
func (s *Session) InfoDigit(r rune) {
	s.deliverDigit(r, fromInfo, time.Now())
}

const (
	fromRTP = iota
	fromInfo
)

// dualDigitWindow is how close the same digit by RFC 4733 and by INFO
// must be to count as one press.
const dualDigitWindow = time.Second

// digitDedupe remembers the last digit delivered, and how.
type digitDedupe struct {
	mu   sync.Mutex
	last rune
	via  int
	at   time.Time
}

func (s *Session) deliverDigit(r rune, via int, now time.Time) {
	d := &s.dedupe
	d.mu.Lock()
	dup := r == d.last && via != d.via && now.Sub(d.at) < dualDigitWindow
	if !dup {
		d.last, d.via, d.at = r, via, now
	}
	d.mu.Unlock()
	if dup {
		return
	}
	select {
	case s.digits <- r:
	default:
		s.stats.dropped.Add(1)
	}
}

// watchInactivity closes Inactive once no packet has arrived for timeout
// while the direction receives; time on hold does not count.
func (s *Session) watchInactivity(timeout time.Duration) {
	defer s.wg.Done()
	tick := time.NewTicker(max(min(timeout/4, time.Second), time.Millisecond))
	defer tick.Stop()
	since := time.Now()
	for {
		select {
		case <-s.closing:
			return
		case now := <-tick.C:
			if !Direction(s.dir.Load()).Receives() {
				since = now
				continue
			}
			if last := s.LastReceived(); last.After(since) {
				since = last
			}
			if now.Sub(since) >= timeout {
				close(s.inactive)
				return
			}
		}
	}
}
