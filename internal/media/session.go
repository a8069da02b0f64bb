package media

import (
	"errors"
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
// Sending: from Start to Close the Session sends one packet every 20 ms
// while its direction sends and no Bridge holds its stream: the next frame
// of its playout queue (Enqueue, Play), the next packet of a digit
// (SendDigit), or a frame of silence in the negotiated codec when nothing
// is queued. Telephony peers expect such a steady stream: SBCs hang up
// calls whose RTP stops, and NAT bindings expire. The slots are paced
// against absolute deadlines by a pacer shared by all Sessions (a packet
// late by a few milliseconds does not delay the ones after it). The
// stream has one SSRC for the Session's life, sequence numbers that go up
// by one a packet sent from a random start, and timestamps that go up by
// 160 a slot on a clock that keeps running while nothing is sent (RFC 3550
// §5.1). Silence frames are packets like any other, so audio after them
// continues the talkspurt: the marker bit is set only on the first packet
// after slots that sent nothing (RFC 3551 §4.1: after Start, a hold, a
// Bridge, a stall of the process), and on the first packet of each digit
// (RFC 4733 §2.5.1.2).
//
// Receiving: packets are read into one buffer, parsed into one reused
// rtp.Packet, and decoded into 20 ms frames that become the receiver's
// own: they are carved out of slabs of 50 frames, a new slab when one is
// used up, so a frame is never written again once handed out and
// receiving does not allocate per packet. Frames go on Audio, or to the
// sink the owner set (SetAudioSink, SetAudioHandler). There is no jitter
// buffer: a packet that arrives after a later one is dropped and counted
// (the agent listens, it does not record). Telephone-events become digits
// on Digits. The Session sends to the address in the peer's SDP until the
// first valid packet arrives, then to wherever that came from and takes
// packets only from there (symmetric RTP, RFC 4961, which is how a caller
// behind NAT is reached).
//
// Bridged (see Bridge), a Session relays what it receives to the other
// leg instead of decoding it (unless the Bridge listens), and sends what
// the other leg relays to it; its playout queue waits until the Bridge
// stops.
//
// Time is the wall clock, not an injected one: pacing is real time
// against a real socket.
type Session struct {
	// InactivityTimeout, if positive, makes Inactive close once no RTP
	// has arrived for that long while the direction receives: the peer
	// is gone without a BYE. Set it before Start.
	InactivityTimeout time.Duration
	// PlayoutLimit is the most audio Enqueue queues ahead of real time;
	// zero means DefaultPlayoutLimit. Set it before the first Enqueue.
	PlayoutLimit time.Duration

	conn  *net.UDPConn
	rtcp  *net.UDPConn // held, never read; nil for a system-picked port
	local netip.AddrPort

	paramsMu sync.Mutex // serialises setParams; readers just Load
	params   atomic.Pointer[Params]
	dir      atomic.Uint32                  // Direction
	remote   atomic.Pointer[netip.AddrPort] // where packets go: the SDP's, then the latched source
	latchID  atomic.Uint64                  // bumped when the SDP names a new remote: latch again

	audio    chan []int16
	sink     atomic.Pointer[audioSink] // where frames go instead of audio
	digits   chan rune
	inactive chan struct{}
	dedupe   digitDedupe

	turn chan struct{} // held by the one Play or SendDigit under way, or by a Bridge
	po   playout       // the queue and the stream's slots
	pace paceSlot      // where the pacer holds the Session; set under lifeMu
	// out is the stream sent: by the pacer under po.mu while the Session
	// is on its wheel, or by a Bridge while it is not.
	out stream

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
		silence, overflow                                                   atomic.Uint64
	}
}

// Stats counts what a Session did. All counts start at zero.
type Stats struct {
	// PacketsSent counts RTP packets sent, audio and events.
	PacketsSent uint64
	// PacketsReceived counts RTP packets taken from the peer.
	PacketsReceived uint64
	// Dropped counts 20 ms frames and digits thrown away because their
	// reader (or sink) did not keep up.
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
	// SilenceSent counts the packets of silence sent, among PacketsSent,
	// because nothing was queued.
	SilenceSent uint64
	// PlayoutOverflow counts the 20 ms frames of audio Enqueue dropped
	// because the playout queue was full.
	PlayoutOverflow uint64
}

// ErrClosed is what Play, SendDigit, Enqueue and Mark return once the
// Session is closed.
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
	// slabFrames is how many frames a slab of received audio holds: the
	// receiver allocates once every slabFrames frames handed out.
	slabFrames = 50
	// digitQueue is how many digits Digits buffers.
	digitQueue = 32
	// rtpHeaderSize is the fixed header Switchback sends (RFC 3550 §5.1:
	// no CSRC, no extension).
	rtpHeaderSize = 12
	// maxMisorder is how far behind the highest sequence number a
	// packet may be and still count as late rather than as a peer that
	// restarted its numbering (RFC 3550 Appendix A.1 uses 100).
	maxMisorder = 100
	// resyncLag is how far behind its deadline the sender may fall
	// (the process stalled) before it stops catching up in a burst and
	// skips the slots missed.
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
	sharedPacer.join(s)
	s.wg.Add(1)
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

// Audio delivers the peer's audio as 20 ms frames of 8 kHz linear PCM,
// unless a sink was set (SetAudioSink, SetAudioHandler). Each frame is the
// reader's own: the Session never writes it again. Frames not taken in
// time are dropped and counted. The channel is closed by Close.
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
		SilenceSent:     s.stats.silence.Load(),
		PlayoutOverflow: s.stats.overflow.Load(),
	}
}

// Frame is 20 ms of audio a Session received, as a sink gets it.
type Frame struct {
	// Leg is the label the Session's owner gave with the sink.
	Leg int
	// PCM is FrameSamples samples of 8 kHz mono linear PCM, the
	// receiver's own: the Session never writes it again.
	PCM []int16
	// At is when the packet that completed the frame arrived.
	At time.Time
}

// audioSink is where a Session's frames go instead of Audio.
type audioSink struct {
	leg     int
	ch      chan<- Frame
	handler func(Frame) bool
}

// SetAudioSink sends the Session's frames on ch, labelled leg, instead of
// on Audio, from the next frame on; a nil ch sends them on Audio again.
// The send never blocks: a frame ch has no room for is dropped and
// counted, so give ch a buffer (a few hundred milliseconds of frames).
// The two legs of a call may share one ch, each with its label. The
// Session never closes ch.
func (s *Session) SetAudioSink(ch chan<- Frame, leg int) {
	if ch == nil {
		s.sink.Store(nil)
		return
	}
	s.sink.Store(&audioSink{leg: leg, ch: ch})
}

// SetAudioHandler hands the Session's frames, labelled leg, to handler
// instead of sending them on Audio, from the next frame on; a nil handler
// sends them on Audio again. handler runs on the Session's receive
// goroutine, or while bridged on the relay's path: it must return at
// once, without calling the Session or its Bridge, reporting whether it
// took the frame (a frame it did not take is counted as dropped). It lets
// an owner put frames on a channel of its own type with no goroutine in
// between.
func (s *Session) SetAudioHandler(leg int, handler func(Frame) bool) {
	if handler == nil {
		s.sink.Store(nil)
		return
	}
	s.sink.Store(&audioSink{leg: leg, handler: handler})
}

// Close stops the Session's goroutines and its stream, releases its
// ports, and closes Audio and Marks. A Play or SendDigit under way
// returns ErrClosed. It is safe to call more than once.
func (s *Session) Close() error {
	s.lifeMu.Lock()
	if s.closed {
		s.lifeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	started := s.started.Load()
	sharedPacer.leave(s) // under lifeMu, as a Bridge's leave and join
	s.lifeMu.Unlock()
	s.closePlayout()
	err := s.conn.Close()
	if s.rtcp != nil {
		s.rtcp.Close()
	}
	s.wg.Wait()
	if !started {
		close(s.audio) // else the receiver closed it on its way out
	}
	return err
}

// sender is a pacer goroutine's buffers, used for one packet at a time.
type sender struct {
	hdr rtp.Header
	buf [rtpHeaderSize + maxDatagram]byte
	pad [FrameSamples]int16
}

func newSender() *sender {
	return &sender{hdr: rtp.Header{Version: 2}}
}

// stream is the RTP stream a Session sends: one SSRC for the Session's
// life, and sequence numbers and a clock that run on from one sender to
// the next. It has one sender at a time: the pacer filling the Session's
// slots, or a Bridge relaying the other leg's packets. The far end sees
// one stream either way.
type stream struct {
	ssrc uint32
	seq  uint16 // the next packet's
	// The clock reads ts0 at t0 (set by the first packet, and moved by a
	// Bridge to the last packet it relayed) and runs at 8 kHz from there,
	// through silence as well (RFC 3550 §5.1).
	ts0 uint32
	t0  time.Time
	// end is the timestamp where the audio of the last packet sent ends,
	// once sentAny: the next packet may not start before it.
	end     uint32
	sentAny bool
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

// writeAudio sends one frame of audio, with timestamp ts, and reports
// whether it went.
func (s *Session) writeAudio(tx *sender, frame []int16, ts uint32) bool {
	p := s.params.Load()
	n := p.Codec.Encode(tx.buf[rtpHeaderSize:], frame)
	return s.writePacket(tx, p.PayloadType, ts, s.out.silent, n)
}

// writeSilence sends one frame of silence in the negotiated codec, with
// timestamp ts, and reports whether it went.
func (s *Session) writeSilence(tx *sender, ts uint32) bool {
	p := s.params.Load()
	copy(tx.buf[rtpHeaderSize:rtpHeaderSize+FrameSamples], p.Codec.silence()[:])
	if !s.writePacket(tx, p.PayloadType, ts, s.out.silent, FrameSamples) {
		return false
	}
	s.stats.silence.Add(1)
	return true
}

// writeEvent sends one telephone-event packet (RFC 4733 §2.5.1), and
// reports whether it went.
func (s *Session) writeEvent(tx *sender, e DTMFEvent, ts uint32, marker bool) bool {
	p := s.params.Load()
	n := e.MarshalTo(tx.buf[rtpHeaderSize:])
	return s.writePacket(tx, p.DTMFPayloadType, ts, marker, n)
}

// writePacket puts the RTP header before the n payload bytes in tx.buf
// and sends the packet, if the direction sends and there is somewhere to
// send it, and reports whether it did. Only sent packets take a sequence
// number.
func (s *Session) writePacket(tx *sender, pt uint8, ts uint32, marker bool, n int) bool {
	remote := s.remote.Load()
	if !Direction(s.dir.Load()).Sends() || !reachable(remote) {
		s.out.silent = true
		return false
	}
	tx.hdr.PayloadType = pt
	tx.hdr.SequenceNumber = s.out.seq
	tx.hdr.Timestamp = ts
	tx.hdr.SSRC = s.out.ssrc
	tx.hdr.Marker = marker
	if _, err := tx.hdr.MarshalTo(tx.buf[:rtpHeaderSize]); err != nil {
		return false
	}
	s.out.seq++
	s.out.silent = false
	if _, err := s.conn.WriteToUDPAddrPort(tx.buf[:rtpHeaderSize+n], *remote); err != nil {
		return false
	}
	s.stats.sent.Add(1)
	return true
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
	// frame is the frame being filled, fill samples of it so far; slab
	// is what is left of the slab frames are carved from. A frame handed
	// out is never written again: the next comes from the slab, and a new
	// slab is allocated when it runs out, the old one collected once its
	// frames are.
	frame []int16
	fill  int
	slab  []int16
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
	s.decodeAudio(rx, p.Codec, rx.pkt.Payload, now)
}

// decodeAudio decodes payload, in codec, into 20 ms frames for Audio or
// the sink. It is on the per-packet path: it allocates only a new slab,
// once every slabFrames frames handed out.
func (s *Session) decodeAudio(rx *receiver, codec Codec, payload []byte, now time.Time) {
	for len(payload) > 0 {
		if rx.frame == nil {
			if len(rx.slab) < FrameSamples {
				rx.slab = make([]int16, slabFrames*FrameSamples)
			}
			rx.frame, rx.slab = rx.slab[:FrameSamples:FrameSamples], rx.slab[FrameSamples:]
		}
		n := codec.Decode(rx.frame[rx.fill:], payload)
		payload = payload[n:]
		rx.fill += n
		if rx.fill < FrameSamples {
			break
		}
		rx.fill = 0
		if s.deliverFrame(rx.frame, now) {
			rx.frame = nil // the receiver's now; a frame dropped is filled again
		}
	}
}

// deliverFrame hands frame to the sink, or to Audio, without waiting,
// and reports whether it was taken.
func (s *Session) deliverFrame(frame []int16, now time.Time) bool {
	ok := false
	if sk := s.sink.Load(); sk == nil {
		select {
		case s.audio <- frame:
			ok = true
		default:
		}
	} else if sk.handler != nil {
		ok = sk.handler(Frame{Leg: sk.leg, PCM: frame, At: now})
	} else {
		select {
		case sk.ch <- Frame{Leg: sk.leg, PCM: frame, At: now}:
			ok = true
		default:
		}
	}
	if !ok {
		s.stats.dropped.Add(1)
	}
	return ok
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
