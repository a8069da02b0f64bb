package media

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Bridge relays RTP between two started Sessions, the two legs of a call
// Switchback stays in the middle of: the caller's, and the return leg it
// placed to hand the call back. It starts no goroutine: each leg's
// receive goroutine sends what it takes on from the other leg's socket,
// rewriting the packet where it was read, so relaying costs no allocation
// and no copy.
//
// A packet goes on once its leg has checked it as it checks any (RTP
// version, the latched source, a negotiated payload type, not late), and
// leaves the other leg as part of that leg's own stream:
//
//   - its payload type is the other leg's: its codec's, or its
//     telephone-event type;
//   - its SSRC is the other leg's, the one its Plays use, so each far end
//     sees one stream however often the call moves between the agent and
//     the bridge;
//   - its sequence number and timestamp are the received ones plus an
//     offset per direction, set by the first packet (and by a new stream
//     coming in: a new SSRC, or numbering that starts again) so that the
//     numbering goes on from the other leg's last packet and its clock
//     from the wall clock: the agent may have played a prompt on it
//     before. That packet has the marker bit set, as has the first after
//     packets were held back. Only packets sent take a number: the far end
//     sees a gap only where packets were lost, or came too late, on the
//     way to Switchback.
//   - its payload is transcoded between PCMU and PCMA when the legs'
//     codecs differ, in place, one lookup a byte (ULawToALaw, ALawToULaw);
//   - a CSRC list, header extension or padding it came with is left out.
//
// RFC 4733 telephone-events go on with the other leg's telephone-event
// payload type and the same timestamp mapping; when the other leg did not
// negotiate telephone-event they are dropped and counted, and the SIP
// layer forwards the digit another way (SIP INFO). Either way each press
// comes out once on Digits, with its leg.
//
// Hold: nothing is sent to a leg whose Direction does not send (its peer
// put the call on hold: sendonly or inactive), and a leg whose Direction
// does not receive drops what arrives, as always. Direction, codec and
// address changes (Update, SetDirection) take effect from the next packet.
//
// While bridged a Session hands out no RTP digits, and no audio unless
// the Bridge listens (Listen); its own stream sends nothing (no silence,
// the relayed packets take its place), its playout queue waits, and Plays
// and SendDigits wait until Stop; its Stats, its LastReceived and its
// inactivity timeout go on.
type Bridge struct {
	relays        [2]relay // relays[i] takes what leg i receives to leg 1-i
	digits        chan LegDigit
	digitsDropped atomic.Uint64
	listen        atomic.Bool
	stopOnce      sync.Once
}

// LegDigit is a DTMF digit a leg of a Bridge received.
type LegDigit struct {
	// Leg is 0 for the first Session given to NewBridge, 1 for the second.
	Leg   int
	Digit rune
}

// BridgeStats counts what a Bridge did. All counts start at zero.
type BridgeStats struct {
	// Legs[i] counts the packets leg i received, for leg 1-i.
	Legs [2]RelayStats
	// DigitsDropped counts digits thrown away because Digits' reader did
	// not keep up.
	DigitsDropped uint64
}

// RelayStats counts the packets one leg of a Bridge took in for the
// other. Those the receiving Session rejected (late, from another source,
// in a format not negotiated, or arriving while it does not receive) are
// counted in its own Stats and not here.
type RelayStats struct {
	// Relayed counts packets sent on, audio and telephone-events.
	Relayed uint64
	// Transcoded counts the audio packets among them converted between
	// PCMU and PCMA.
	Transcoded uint64
	// Events counts the telephone-event packets among them.
	Events uint64
	// Dropped counts packets not sent because the other leg is on hold
	// (its Direction does not send), has no address to send to, or its
	// socket refused the packet.
	Dropped uint64
	// EventsDropped counts telephone-event packets not sent because the
	// other leg did not negotiate telephone-event.
	EventsDropped uint64
}

// ErrBridged is what NewBridge returns for a Session already in a Bridge.
var ErrBridged = errors.New("rtp: session already bridged")

// NewBridge starts relaying between a and b, two started Sessions, until
// Stop. It waits for a Play or SendDigit under way on either to finish, or
// for ctx to end: cancel the agent's Play to bridge at once. Bridging a
// Session that is already in a Bridge is ErrBridged; a closed one,
// ErrClosed.
func NewBridge(ctx context.Context, a, b *Session) (*Bridge, error) {
	if a == b {
		return nil, errors.New("rtp: bridge: a session with itself")
	}
	if !a.started.Load() || !b.started.Load() {
		return nil, errNotStarted
	}
	br := &Bridge{digits: make(chan LegDigit, digitQueue)}
	br.relays[0] = relay{br: br, leg: 0, from: a, to: b}
	br.relays[1] = relay{br: br, leg: 1, from: b, to: a}
	if !a.relay.CompareAndSwap(nil, &br.relays[0]) {
		return nil, ErrBridged
	}
	if !b.relay.CompareAndSwap(nil, &br.relays[1]) {
		a.relay.Store(nil)
		return nil, ErrBridged
	}
	// Holding both turns keeps the agent's sends out of the streams the
	// relays now send on.
	if err := a.takeTurn(ctx); err != nil {
		a.relay.Store(nil)
		b.relay.Store(nil)
		return nil, err
	}
	if err := b.takeTurn(ctx); err != nil {
		<-a.turn
		a.relay.Store(nil)
		b.relay.Store(nil)
		return nil, err
	}
	// The pacer stops filling the legs' slots: the relays send on their
	// streams from now on.
	a.holdForBridge()
	b.holdForBridge()
	for i := range br.relays {
		r := &br.relays[i]
		r.mu.Lock()
		r.state = relaying
		r.mu.Unlock()
	}
	return br, nil
}

// takeTurn waits for the Session's turn to send, as Play does.
func (s *Session) takeTurn(ctx context.Context) error {
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	select {
	case s.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
}

// Stop ends the relaying. Once it returns no packet is relayed any more,
// Digits is closed, and each Session is back with the agent: it hands out
// audio and digits again, and its continuous stream resumes (the same
// SSRC, the next sequence number, a clock running on from the last
// relayed packet, a new talkspurt) with what its playout queue holds, or
// silence. Stop may come before or after the Sessions are closed, more
// than once, and while packets arrive. A Bridge has no goroutine of its
// own: closing both Sessions without Stop leaks nothing.
func (br *Bridge) Stop() {
	br.stopOnce.Do(func() {
		for i := range br.relays {
			r := &br.relays[i]
			r.mu.Lock()
			r.state = stopped
			r.mu.Unlock()
			// The stream is the pacer's again; its next packet starts a
			// talkspurt.
			r.to.resumeFromBridge()
		}
		for i := range br.relays {
			r := &br.relays[i]
			from := br.relays[1-i].to
			from.relay.CompareAndSwap(r, nil)
			<-r.to.turn
		}
		close(br.digits)
	})
}

// Listen, while on, has each leg also decode the audio it relays into
// frames for its own Session's Audio or sink (SetAudioSink), so that an
// agent keeps hearing both legs of a bridged call: give the legs' sinks
// one channel and a label each. It is off by default, and a Bridge that
// does not listen decodes nothing. It takes effect from the next packet.
func (br *Bridge) Listen(on bool) { br.listen.Store(on) }

// Digits delivers the DTMF digits either leg receives as RFC 4733
// telephone-events, each press once, whether or not it was relayed.
// Digits not taken in time are dropped and counted: the relay never
// waits. Stop closes it.
func (br *Bridge) Digits() <-chan LegDigit { return br.digits }

// Stats returns the Bridge's counts so far.
func (br *Bridge) Stats() BridgeStats {
	var st BridgeStats
	for i := range br.relays {
		c := &br.relays[i].stats
		st.Legs[i] = RelayStats{
			Relayed:       c.relayed.Load(),
			Transcoded:    c.transcoded.Load(),
			Events:        c.events.Load(),
			Dropped:       c.dropped.Load(),
			EventsDropped: c.eventsDropped.Load(),
		}
	}
	st.DigitsDropped = br.digitsDropped.Load()
	return st
}

// A relay's states: it relays only in between, and its leg's Session
// hands packets to the agent otherwise.
const (
	starting = iota
	relaying
	stopped
)

// relay is one direction of a Bridge: the packets one leg receives, sent
// on from the other leg, to.
type relay struct {
	br   *Bridge
	leg  int
	from *Session // the leg that receives
	to   *Session // the leg that sends on

	// mu is held while a packet is relayed, by the receiving leg's
	// goroutine; Stop takes it to know none is.
	mu    sync.Mutex
	state int
	// The stream coming in, and the offsets that map it onto to's stream.
	based   bool
	ssrc    uint32
	lastSeq uint16
	seqOff  uint16
	tsOff   uint32
	// mark sets the marker bit of the next audio packet sent: the first,
	// and the first after some were held back.
	mark bool

	stats struct {
		relayed, transcoded, events, dropped, eventsDropped atomic.Uint64
	}
}

// relay sends on the packet b, parsed into rx.pkt, that the Session with
// parameters p took in, and reports whether it did (or dropped it as the
// bridge should): false sends the packet to the agent instead. It is the
// per-packet path, run by the receiving Session's goroutine: it must not
// allocate.
func (r *relay) relay(rx *receiver, p *Params, b []byte, isEvent bool, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != relaying {
		return false
	}
	pkt := &rx.pkt
	out := &r.to.out         // the other leg's stream, held by the Bridge
	op := r.to.params.Load() // the other leg's parameters

	seq, ts := pkt.SequenceNumber, pkt.Timestamp
	if !r.based || pkt.SSRC != r.ssrc || int16(seq-r.lastSeq) <= 0 {
		// The first packet, or a new stream in: its numbering and clock
		// bear no relation to the last one's. (The receiving Session has
		// dropped late packets, so one behind the last is a restart.) It
		// goes on from the wall clock, but not before the end of the last
		// packet sent: the stream's own frame of silence, say.
		r.based, r.ssrc = true, pkt.SSRC
		r.seqOff = out.seq - seq
		base := out.tsAt(now)
		if out.sentAny && int32(base-out.end) < 0 {
			base = out.end
		}
		r.tsOff = base - ts
		r.mark = true
	}
	r.lastSeq = seq
	if !isEvent && r.br.listen.Load() {
		// Before the payload is transcoded in place.
		r.from.decodeAudio(rx, p.Codec, pkt.Payload, now)
	}

	var pt uint8
	if isEvent {
		if d, ok := rx.dtmf.Feed(pkt.Payload, ts, pkt.Marker); ok {
			select {
			case r.br.digits <- LegDigit{Leg: r.leg, Digit: d}:
			default:
				r.br.digitsDropped.Add(1)
			}
		}
		if !op.DTMF {
			r.stats.eventsDropped.Add(1)
			r.seqOff--
			return true
		}
		pt = op.DTMFPayloadType
	} else {
		pt = op.PayloadType
	}
	remote := r.to.remote.Load()
	if !Direction(r.to.dir.Load()).Sends() || !reachable(remote) {
		r.stats.dropped.Add(1)
		r.seqOff--
		r.mark = true
		return true
	}

	payload := pkt.Payload
	if !isEvent && p.Codec != op.Codec {
		if op.Codec == PCMA {
			ULawToALaw(payload, payload)
		} else {
			ALawToULaw(payload, payload)
		}
		r.stats.transcoded.Add(1)
	}
	marker := pkt.Marker
	if !isEvent {
		marker = marker || r.mark
	}
	outSeq, outTS := seq+r.seqOff, ts+r.tsOff

	// RFC 3550 §5.1: a fixed header written over the end of the one
	// received, just before the payload.
	start := len(b) - int(pkt.PaddingSize) - len(payload)
	h := b[start-rtpHeaderSize : start]
	h[0] = 2 << 6
	h[1] = pt & 0x7F
	if marker {
		h[1] |= 0x80
	}
	binary.BigEndian.PutUint16(h[2:4], outSeq)
	binary.BigEndian.PutUint32(h[4:8], outTS)
	binary.BigEndian.PutUint32(h[8:12], out.ssrc)
	if _, err := r.to.conn.WriteToUDPAddrPort(b[start-rtpHeaderSize:start+len(payload)], *remote); err != nil {
		r.stats.dropped.Add(1)
		r.seqOff--
		r.mark = true
		return true
	}
	r.to.stats.sent.Add(1)
	r.stats.relayed.Add(1)
	out.seq = outSeq + 1
	if isEvent {
		r.stats.events.Add(1)
		return true
	}
	r.mark = false
	// The leg's clock runs on from here once the agent has it back.
	out.ts0, out.t0 = outTS, now
	out.sentAny, out.end = true, outTS+uint32(len(payload)) // a G.711 byte is a sample
	return true
}
