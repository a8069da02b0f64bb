package media

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"
)

// bridgeRig is two started Sessions, each with a raw peer at its far end:
// the caller on leg 0, the return leg's callee on leg 1.
type bridgeRig struct {
	t     testing.TB
	peers [2]*rawPeer
	legs  [2]*Session
	// What each peer sends: its SSRC, next sequence number and timestamp.
	ssrc [2]uint32
	seq  [2]uint16
	ts   [2]uint32
}

// newBridgeRig starts the legs with p[i], sending to peer i. Nothing is
// bridged yet.
func newBridgeRig(t testing.TB, p [2]Params) *bridgeRig {
	t.Helper()
	g := &bridgeRig{t: t, ssrc: [2]uint32{0x11110000, 0x22220000}, seq: [2]uint16{1000, 60000}, ts: [2]uint32{5000, 4294960000}}
	for i := range g.legs {
		g.peers[i] = newRawPeer(t)
		g.legs[i] = listen(t)
		p[i].Remote = g.peers[i].addr()
		if err := g.legs[i].Start(p[i]); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// bridge bridges the legs, stopped when the test ends.
func (g *bridgeRig) bridge() *Bridge {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	br, err := NewBridge(ctx, g.legs[0], g.legs[1])
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(br.Stop)
	return br
}

// sendAudio has peer i send n 20 ms packets of payload (the codec's
// bytes) to its leg.
func (g *bridgeRig) sendAudio(i, n int, pt uint8, payload []byte) {
	g.t.Helper()
	for range n {
		g.peers[i].send(g.legs[i].LocalAddr(), rtp.Header{PayloadType: pt, SequenceNumber: g.seq[i], Timestamp: g.ts[i], SSRC: g.ssrc[i]}, payload)
		g.seq[i]++
		g.ts[i] += FrameSamples
	}
}

// sendDigit has peer i send one press of digit as RFC 4733 events with
// payload type pt: two updates and three ends, all with the press's
// timestamp, the first marked.
func (g *bridgeRig) sendDigit(i int, digit rune, pt uint8) {
	g.t.Helper()
	events, err := DTMFEvents(digit, 60*time.Millisecond)
	if err != nil {
		g.t.Fatal(err)
	}
	for k, e := range events {
		var b [DTMFEventSize]byte
		e.MarshalTo(b[:])
		g.peers[i].send(g.legs[i].LocalAddr(), rtp.Header{PayloadType: pt, Marker: k == 0, SequenceNumber: g.seq[i], Timestamp: g.ts[i], SSRC: g.ssrc[i]}, b[:])
		g.seq[i]++
	}
	g.ts[i] += uint32(len(events)) * FrameSamples
}

// codes returns a payload of n G.711 codes going through all 256.
func codes(n, from int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(from + i)
	}
	return b
}

// transcoded is payload in codec from as codec to would carry it.
func transcoded(payload []byte, from, to Codec) []byte {
	out := append([]byte(nil), payload...)
	switch {
	case from == PCMU && to == PCMA:
		ULawToALaw(out, out)
	case from == PCMA && to == PCMU:
		ALawToULaw(out, out)
	}
	return out
}

// checkStream checks that packets continue one stream: SSRC ssrc, payload
// type pt, sequence numbers from seq on without a gap, the marker on the
// first packet only, and 20 ms of timestamp between audio packets.
func checkStream(t *testing.T, got []received, ssrc uint32, pt uint8, seq uint16, from netip.AddrPort) {
	t.Helper()
	for k, p := range got {
		if p.SSRC != ssrc || p.PayloadType != pt || p.SequenceNumber != seq+uint16(k) || p.Marker != (k == 0) {
			t.Errorf("packet %d: %v; want SSRC %#x, payload type %d, sequence number %d, marker %v", k, p.Header, ssrc, pt, seq+uint16(k), k == 0)
		}
		if k > 0 && p.Timestamp != got[k-1].Timestamp+FrameSamples {
			t.Errorf("packet %d: timestamp %d after %d", k, p.Timestamp, got[k-1].Timestamp)
		}
		if p.from != from {
			t.Errorf("packet %d from %v, want the leg's own address %v", k, p.from, from)
		}
		if p.Padding || p.Extension || len(p.CSRC) != 0 {
			t.Errorf("packet %d: header extras %v", k, p.Header)
		}
	}
}

// TestBridgeRelays sends audio both ways through a bridge, with and
// without transcoding: each far end gets it on the stream its leg already
// sent the agent's audio on, and the audio intact.
func TestBridgeRelays(t *testing.T) {
	for _, tc := range []struct {
		name   string
		codecs [2]Codec
	}{
		{"PCMU-PCMU", [2]Codec{PCMU, PCMU}},
		{"PCMA-PCMA", [2]Codec{PCMA, PCMA}},
		{"PCMU-PCMA", [2]Codec{PCMU, PCMA}},
		{"PCMA-PCMU", [2]Codec{PCMA, PCMU}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newBridgeRig(t, [2]Params{params(tc.codecs[0], netip.AddrPort{}), params(tc.codecs[1], netip.AddrPort{})})
			// The agent talks to the caller first.
			play(t, g.legs[0], tone(3*FrameSamples, 440, 5000))
			agent := g.peers[0].read(100 * time.Millisecond)
			if len(agent) != 3 {
				t.Fatalf("%d packets from the agent, want 3", len(agent))
			}
			br := g.bridge()

			for i := range 2 {
				other := 1 - i
				payload := codes(FrameSamples, 7*i)
				start := time.Now()
				g.sendAudio(i, 10, tc.codecs[i].PayloadType(), payload)
				got := g.peers[other].read(100 * time.Millisecond)
				if len(got) != 10 {
					t.Fatalf("leg %d → %d: %d packets, want 10", i, other, len(got))
				}
				// Each leg's stream goes on from its last packet, the
				// agent's or silence, with a new talkspurt.
				checkStream(t, got, g.legs[other].out.ssrc, tc.codecs[other].PayloadType(), got[0].SequenceNumber, g.legs[other].LocalAddr())
				log := g.peers[other].log
				if markers := checkContinuous(t, log); markers[len(markers)-1] != len(log)-10 {
					t.Errorf("leg %d → %d: markers on packets %v of %d, want one on the first relayed", i, other, markers, len(log))
				}
				if other == 0 {
					// The clock ran on from the agent's packets.
					if d := got[0].Timestamp - agent[2].Timestamp; d < FrameSamples || d > uint32(time.Since(start).Seconds()*SampleRate)+8000 {
						t.Errorf("first relayed timestamp %d after the agent's last", d)
					}
				}
				want := transcoded(payload, tc.codecs[i], tc.codecs[other])
				for k, p := range got {
					if string(p.Payload) != string(want) {
						t.Fatalf("leg %d → %d, packet %d: payload % x…, want % x…", i, other, k, p.Payload[:8], want[:8])
					}
				}
			}
			st := br.Stats()
			var transcodes uint64
			if tc.codecs[0] != tc.codecs[1] {
				transcodes = 10
			}
			for i, ls := range st.Legs {
				if ls != (RelayStats{Relayed: 10, Transcoded: transcodes}) {
					t.Errorf("leg %d stats %+v", i, ls)
				}
			}
			for i, s := range g.legs {
				if ss := s.Stats(); ss.PacketsReceived != 10 || ss.Dropped != 0 {
					t.Errorf("leg %d session stats %+v", i, ss)
				}
			}
			if n := len(g.legs[0].Audio()) + len(g.legs[1].Audio()); n != 0 {
				t.Errorf("%d frames handed to the agent while bridged", n)
			}
		})
	}
}

// TestBridgeRewritesHeaderInPlace sends a packet with CSRCs, a header
// extension and padding: it goes on as a plain 12-byte header before the
// same payload.
func TestBridgeRewritesHeaderInPlace(t *testing.T) {
	g := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMU, netip.AddrPort{})})
	br := g.bridge()
	payload := codes(FrameSamples, 3)
	p := &rtp.Packet{
		Header: rtp.Header{
			Version: 2, Padding: true, PaddingSize: 4, SequenceNumber: 7, Timestamp: 9, SSRC: 5,
			CSRC: []uint32{1, 2, 3},
		},
		Payload: payload,
	}
	if err := p.SetExtension(1, []byte{0xAA, 0xBB}); err != nil {
		t.Fatal(err)
	}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.peers[0].conn.WriteToUDPAddrPort(raw, g.legs[0].LocalAddr()); err != nil {
		t.Fatal(err)
	}
	got := g.peers[1].read(100 * time.Millisecond)
	if len(got) != 1 {
		t.Fatalf("%d packets, want 1", len(got))
	}
	checkStream(t, got, g.legs[1].out.ssrc, 0, got[0].SequenceNumber, g.legs[1].LocalAddr())
	if string(got[0].Payload) != string(payload) {
		t.Errorf("payload % x…", got[0].Payload[:8])
	}
	if st := br.Stats(); st.Legs[0].Relayed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestBridgeDTMF sends digits both ways: each press comes out of Digits
// once with its leg, and its events go on with the other leg's
// telephone-event payload type, or are dropped when it has none.
func TestBridgeDTMF(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dtmfOn1 bool
	}{
		{"both legs take telephone-event", true},
		{"the return leg does not", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p0, p1 := params(PCMU, netip.AddrPort{}), params(PCMA, netip.AddrPort{})
			p1.DTMF, p1.DTMFPayloadType = tc.dtmfOn1, 96
			g := newBridgeRig(t, [2]Params{p0, p1})
			br := g.bridge()

			g.sendAudio(0, 2, 0, codes(FrameSamples, 0))
			g.sendDigit(0, '5', 101)
			g.sendDigit(0, '5', 101) // a second press of the same key
			g.sendDigit(0, '#', 101)
			g.sendAudio(0, 2, 0, codes(FrameSamples, 0))
			got := g.peers[1].read(100 * time.Millisecond)

			want := []LegDigit{{0, '5'}, {0, '5'}, {0, '#'}}
			if tc.dtmfOn1 {
				want = append(want, LegDigit{1, '9'})
			}
			var digits []LegDigit
			for len(digits) < len(want) {
				select {
				case d := <-br.Digits():
					digits = append(digits, d)
				case <-time.After(time.Second):
					t.Fatalf("digits %v, then none for 1 s", digits)
				}
				if len(digits) == 3 && tc.dtmfOn1 {
					g.sendDigit(1, '9', 96)
				}
			}
			if string(fmtDigits(digits)) != string(fmtDigits(want)) {
				t.Errorf("digits %v, want %v", digits, want)
			}
			select {
			case d := <-br.Digits():
				t.Errorf("digit %v more", d)
			case <-time.After(50 * time.Millisecond):
			}

			st := br.Stats()
			if !tc.dtmfOn1 {
				// The audio goes on, numbered without a gap where the
				// events were.
				if len(got) != 4 {
					t.Fatalf("%d packets, want the 4 of audio", len(got))
				}
				for k, p := range got {
					if p.PayloadType != 8 || p.SequenceNumber != got[0].SequenceNumber+uint16(k) {
						t.Errorf("packet %d: %v", k, p.Header)
					}
				}
				if st.Legs[0] != (RelayStats{Relayed: 4, Transcoded: 4, EventsDropped: 15}) {
					t.Errorf("leg 0 stats %+v", st.Legs[0])
				}
				return
			}
			if len(got) != 4+15 {
				t.Fatalf("%d packets, want 19", len(got))
			}
			for k, p := range got {
				if p.SequenceNumber != got[0].SequenceNumber+uint16(k) {
					t.Errorf("packet %d: sequence number %d", k, p.SequenceNumber)
				}
				isEvent := k >= 2 && k < 17
				if isEvent && p.PayloadType != 96 || !isEvent && p.PayloadType != 8 {
					t.Errorf("packet %d: payload type %d", k, p.PayloadType)
				}
			}
			for press := range 3 {
				ev := got[2+5*press : 7+5*press]
				for k, p := range ev {
					// The timestamps keep their spacing: a press 100 ms
					// after the one before, each packet of it the press's.
					if p.Timestamp != got[1].Timestamp+FrameSamples+uint32(press)*5*FrameSamples || p.Marker != (k == 0) {
						t.Errorf("press %d packet %d: %v", press, k, p.Header)
					}
				}
			}
			if st.Legs[0] != (RelayStats{Relayed: 19, Transcoded: 4, Events: 15}) {
				t.Errorf("leg 0 stats %+v", st.Legs[0])
			}
			if evs := g.peers[0].read(100 * time.Millisecond); len(evs) != 5 || evs[0].PayloadType != 101 {
				t.Errorf("leg 1's press reached the caller as %d packets", len(evs))
			}
		})
	}
}

func fmtDigits(ds []LegDigit) []rune {
	var out []rune
	for _, d := range ds {
		out = append(out, rune('0'+d.Leg), d.Digit)
	}
	return out
}

// TestBridgeHold puts each leg on hold in turn: nothing goes to a leg
// whose peer holds the call, and nothing is taken from a peer that does
// not send; taken off hold, the stream goes on without a gap.
func TestBridgeHold(t *testing.T) {
	g := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMU, netip.AddrPort{})})
	br := g.bridge()
	a, b := g.legs[0], g.legs[1]
	payload := codes(FrameSamples, 0)

	g.sendAudio(0, 5, 0, payload)
	before := g.peers[1].read(100 * time.Millisecond)
	if len(before) != 5 {
		t.Fatalf("%d packets before the hold, want 5", len(before))
	}

	// The return leg's peer holds the call (a=sendonly): Switchback
	// answers recvonly and sends it nothing; it still hears it.
	b.SetDirection(SendOnly.Reverse())
	g.sendAudio(0, 5, 0, payload)
	if got := g.peers[1].read(100 * time.Millisecond); len(got) != 0 {
		t.Fatalf("%d packets sent to the leg on hold", len(got))
	}
	g.sendAudio(1, 3, 0, payload)
	if got := g.peers[0].read(100 * time.Millisecond); len(got) != 3 {
		t.Fatalf("%d packets from the leg on hold, want its 3 (music on hold)", len(got))
	}
	if st := br.Stats(); st.Legs[0].Dropped != 5 || st.Legs[0].Relayed != 5 {
		t.Errorf("leg 0 stats %+v", st.Legs[0])
	}

	b.SetDirection(SendRecv)
	g.sendAudio(0, 5, 0, payload)
	after := g.peers[1].read(100 * time.Millisecond)
	if len(after) != 5 {
		t.Fatalf("%d packets after the hold, want 5", len(after))
	}
	checkStream(t, after, before[0].SSRC, 0, before[4].SequenceNumber+1, b.LocalAddr())

	// The caller's side stops sending (a=recvonly): Switchback answers
	// sendonly and drops what still arrives from it.
	a.SetDirection(SendOnly)
	g.sendAudio(0, 3, 0, payload)
	if got := g.peers[1].read(100 * time.Millisecond); len(got) != 0 {
		t.Fatalf("%d packets relayed from a leg that does not send", len(got))
	}
	if st := br.Stats(); st.Legs[0].Relayed != 10 || st.Legs[0].Dropped != 5 {
		t.Errorf("leg 0 stats %+v", st.Legs[0])
	}
	if st := a.Stats(); st.PacketsReceived != 18 {
		t.Errorf("leg 0 received %d packets, want all 18 counted", st.PacketsReceived)
	}
}

// TestBridgeStop checks the Sessions are the agent's again once the
// bridge stops, and not before: audio, digits, Plays, and a stream that
// goes on.
func TestBridgeStop(t *testing.T) {
	g := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMU, netip.AddrPort{})})
	a := g.legs[0]
	br := g.bridge()

	g.sendAudio(1, 3, 0, codes(FrameSamples, 0))
	relayed := g.peers[0].read(100 * time.Millisecond)
	if len(relayed) != 3 {
		t.Fatalf("%d packets relayed, want 3", len(relayed))
	}
	g.sendAudio(0, 2, 0, codes(FrameSamples, 0))
	g.sendDigit(0, '1', 101)
	if got := g.peers[1].read(100 * time.Millisecond); len(got) != 2+5 {
		t.Fatalf("%d packets relayed, want 7", len(got))
	}
	select {
	case f := <-a.Audio():
		t.Fatalf("frame of %d samples for the agent while bridged", len(f))
	case r := <-a.Digits():
		t.Fatalf("digit %q for the agent while bridged", r)
	case <-time.After(100 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Play(ctx, tone(FrameSamples, 440, 5000)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Play while bridged returned %v, want it to wait", err)
	}

	// A Play waiting for the bridge goes once it stops, on the same
	// stream.
	errc := make(chan error, 1)
	go func() { errc <- a.Play(context.Background(), tone(2*FrameSamples, 440, 5000)) }()
	time.Sleep(20 * time.Millisecond)
	br.Stop()
	br.Stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	played := g.peers[0].read(100 * time.Millisecond)
	if len(played) != 2 {
		t.Fatalf("%d packets played after Stop, want 2", len(played))
	}
	// One stream throughout: the relayed packets, then the stream's own
	// (silence maybe, and the Play), a new talkspurt.
	log := g.peers[0].log
	if markers := checkContinuous(t, log); len(markers) < 2 || log[markers[len(markers)-2]].SequenceNumber != relayed[0].SequenceNumber ||
		log[markers[len(markers)-1]].SequenceNumber != relayed[2].SequenceNumber+1 {
		t.Errorf("markers on packets %v of %d: want on the first relayed and the first after Stop", markers, len(log))
	}
	if d := played[0].Timestamp - relayed[2].Timestamp; d < FrameSamples || d > SampleRate {
		t.Errorf("the agent's clock went on %d after the last relayed packet", d)
	}

	if d := <-br.Digits(); d != (LegDigit{0, '1'}) {
		t.Errorf("bridge's digit %v, want the '1' pressed while bridged", d)
	}
	if d, ok := <-br.Digits(); ok {
		t.Errorf("digit %v, or Digits not closed by Stop", d)
	}
	g.sendAudio(0, 1, 0, codes(FrameSamples, 0))
	collect(t, a, 1, time.Second)
	g.sendDigit(0, '2', 101)
	if got := readDigits(a, 100*time.Millisecond); got != "2" {
		t.Errorf("agent's digits after Stop %q, want %q", got, "2")
	}
	if got := g.peers[1].read(50 * time.Millisecond); len(got) != 0 {
		t.Errorf("%d packets relayed after Stop", len(got))
	}

	// Bridged again, relaying takes up where it stopped.
	br2 := g.bridge()
	g.sendAudio(1, 2, 0, codes(FrameSamples, 0))
	again := g.peers[0].read(100 * time.Millisecond)
	if len(again) != 2 {
		t.Fatalf("%d packets relayed by the second bridge, want 2", len(again))
	}
	log = g.peers[0].log
	if markers := checkContinuous(t, log); log[markers[len(markers)-1]].SequenceNumber != again[0].SequenceNumber {
		t.Errorf("markers on packets %v of %d: want on the first relayed again", markers, len(log))
	}
	br2.Stop()
}

func TestNewBridgeErrors(t *testing.T) {
	ctx := context.Background()
	g := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMU, netip.AddrPort{})})
	a, b := g.legs[0], g.legs[1]
	if _, err := NewBridge(ctx, a, a); err == nil {
		t.Error("a Session bridged with itself")
	}
	if _, err := NewBridge(ctx, a, listen(t)); !errors.Is(err, errNotStarted) {
		t.Errorf("with a Session not started: %v", err)
	}

	br, err := NewBridge(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	c := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMU, netip.AddrPort{})}).legs[0]
	if _, err := NewBridge(ctx, c, b); !errors.Is(err, ErrBridged) {
		t.Errorf("b bridged twice: %v", err)
	}
	if _, err := NewBridge(ctx, a, c); !errors.Is(err, ErrBridged) {
		t.Errorf("a bridged twice: %v", err)
	}
	br.Stop()

	// A Play under way holds the bridge back until it ends.
	errc := make(chan error, 1)
	go func() { errc <- b.Play(ctx, tone(10*FrameSamples, 440, 5000)) }()
	time.Sleep(20 * time.Millisecond)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := NewBridge(short, a, b); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("NewBridge during a Play: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	br, err = NewBridge(ctx, a, b)
	if err != nil {
		t.Fatalf("NewBridge after the Play: %v", err)
	}
	br.Stop()

	c.Close()
	if _, err := NewBridge(ctx, a, c); !errors.Is(err, ErrClosed) {
		t.Errorf("with a closed Session: %v", err)
	}
	if br, err := NewBridge(ctx, a, b); err != nil {
		t.Errorf("a and b not left free by the failures: %v", err)
	} else {
		br.Stop()
	}
}

// TestBridgeInactivity checks the inactivity timeout the SIP layer relies
// on still fires while bridged.
func TestBridgeInactivity(t *testing.T) {
	g := &bridgeRig{t: t, ssrc: [2]uint32{1, 2}}
	for i := range g.legs {
		g.peers[i] = newRawPeer(t)
		g.legs[i] = listen(t)
		g.legs[i].InactivityTimeout = 150 * time.Millisecond
		if err := g.legs[i].Start(params(PCMU, g.peers[i].addr())); err != nil {
			t.Fatal(err)
		}
	}
	g.bridge()
	for range 6 {
		g.sendAudio(0, 1, 0, codes(FrameSamples, 0))
		g.sendAudio(1, 1, 0, codes(FrameSamples, 0))
		time.Sleep(50 * time.Millisecond)
	}
	for i, s := range g.legs {
		select {
		case <-s.Inactive():
			t.Fatalf("leg %d inactive while packets arrive", i)
		default:
		}
	}
	g.sendAudio(1, 1, 0, codes(FrameSamples, 0))
	select {
	case <-g.legs[0].Inactive():
	case <-time.After(2 * time.Second):
		t.Fatal("leg 0 not inactive 2 s after its last packet")
	}
}

// TestBridgeStopRaces stops bridges while both peers flood them, then
// closes the Sessions: run with -race, and no goroutine is left.
func TestBridgeStopRaces(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for round := range 5 {
		g := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMA, netip.AddrPort{})})
		br := g.bridge()
		packet := func(i int) []byte {
			b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: g.legs[i].params.Load().PayloadType, SSRC: uint32(i + 1)}, Payload: codes(FrameSamples, 0)}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		var senders, readers sync.WaitGroup
		stop := make(chan struct{})
		for i := range 2 {
			b := packet(i)
			to := g.legs[i].LocalAddr()
			conn := g.peers[i].conn
			senders.Go(func() {
				for n := range 3000 {
					select {
					case <-stop:
						return
					default:
					}
					binary.BigEndian.PutUint16(b[2:4], uint16(n))
					conn.WriteToUDPAddrPort(b, to)
				}
			})
			// Drain the other side so nothing backs up.
			rd := g.peers[1-i].conn
			rd.SetReadDeadline(time.Now().Add(5 * time.Second))
			readers.Go(func() {
				buf := make([]byte, 1500)
				for {
					if _, err := rd.Read(buf); err != nil {
						return
					}
				}
			})
		}
		readers.Go(func() {
			for range br.Digits() {
			}
		})
		time.Sleep(time.Duration(round) * 5 * time.Millisecond)
		br.Stop()
		if round%2 == 0 {
			g.legs[0].Close()
			g.legs[1].Close()
		}
		close(stop)
		senders.Wait()
		g.legs[0].Close()
		g.legs[1].Close()
		for _, p := range g.peers {
			p.conn.SetReadDeadline(time.Now())
		}
		readers.Wait()
		_ = br.Stats()
	}
}

// TestBridgeDoesNotAllocate pins the media path's rule on the relay:
// a packet in on one leg and out of the other, through the real sockets
// and receive goroutine, allocates nothing, transcoded or not, audio or
// telephone-event.
func TestBridgeDoesNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		codecs [2]Codec
		event  bool
	}{
		{"PCMU", [2]Codec{PCMU, PCMU}, false},
		{"PCMU to PCMA", [2]Codec{PCMU, PCMA}, false},
		{"telephone-event", [2]Codec{PCMU, PCMU}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newBridgeRig(t, [2]Params{params(tc.codecs[0], netip.AddrPort{}), params(tc.codecs[1], netip.AddrPort{})})
			br := g.bridge()
			relayOne := relayLoop(t, g, tc.event)
			relayOne() // latches
			if allocs := testing.AllocsPerRun(500, relayOne); allocs != 0 {
				t.Errorf("%v allocations per relayed packet, want 0", allocs)
			}
			if st := br.Stats(); st.Legs[0].Relayed != 502 {
				t.Errorf("stats %+v, want 502 relayed", st.Legs[0])
			}
		})
	}
}

// TestBridgeListeningDoesNotAllocate: a listening Bridge decodes what it
// relays into frames the sink keeps; that costs a slab every slabFrames
// frames, and nothing per packet.
func TestBridgeListeningDoesNotAllocate(t *testing.T) {
	g := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMA, netip.AddrPort{})})
	const runs = 10 * slabFrames
	kept := make([][]int16, 0, runs+2)
	g.legs[0].SetAudioHandler(0, func(f Frame) bool {
		if len(kept) < cap(kept) {
			kept = append(kept, f.PCM)
		}
		return true
	})
	br := g.bridge()
	br.Listen(true)
	relayOne := relayLoop(t, g, false)
	relayOne()
	if allocs := mallocs(runs, relayOne); allocs > runs/slabFrames+1 {
		t.Errorf("%d allocations for %d packets relayed and heard, want a slab every %d", allocs, runs, slabFrames)
	}
	if st := br.Stats(); st.Legs[0].Relayed != runs+2 || len(kept) != runs+2 {
		t.Errorf("stats %+v, %d frames heard", st.Legs[0], len(kept))
	}
}

// relayLoop returns a function sending one packet from peer 0 and reading
// it at peer 1, without allocating itself.
func relayLoop(t testing.TB, g *bridgeRig, event bool) func() {
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: g.legs[0].params.Load().PayloadType, SSRC: 1}, Payload: codes(FrameSamples, 0)}
	if event {
		pkt.PayloadType = 101
		pkt.Payload = []byte{5, 10, 0, 160} // digit 5, never ending: reported once
	}
	out, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	to := g.legs[0].LocalAddr()
	in, rd := g.peers[0].conn, g.peers[1].conn
	rd.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 1500)
	var seq uint16
	return func() {
		seq++
		binary.BigEndian.PutUint16(out[2:4], seq)
		if _, err := in.WriteToUDPAddrPort(out, to); err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkBridgeRelay measures one packet through a bridge, unpaced:
// sent by a peer, relayed by one leg's receive goroutine out of the other
// leg, and read by the other peer.
func BenchmarkBridgeRelay(b *testing.B) {
	for _, tc := range []struct {
		name   string
		codecs [2]Codec
	}{
		{"PCMU", [2]Codec{PCMU, PCMU}},
		{"PCMU-PCMA", [2]Codec{PCMU, PCMA}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			g := newBridgeRig(b, [2]Params{params(tc.codecs[0], netip.AddrPort{}), params(tc.codecs[1], netip.AddrPort{})})
			g.bridge()
			relayOne := relayLoop(b, g, false)
			relayOne()
			b.ReportAllocs()
			for b.Loop() {
				relayOne()
			}
		})
	}
}

// TestBridgeHoldsTheQueue checks what a bridged leg does with its playout
// queue: it leaves the pacer (an idle bridged call costs it nothing), its
// queued audio waits for Stop and then goes, marked, on the same stream,
// and a mark with nothing before it is delivered at once.
func TestBridgeHoldsTheQueue(t *testing.T) {
	g := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMU, netip.AddrPort{})})
	a := g.legs[0]
	br := g.bridge()
	for i, s := range g.legs {
		s.lifeMu.Lock()
		if s.pace.shard != nil {
			t.Errorf("leg %d on the pacer's wheel while bridged", i)
		}
		s.lifeMu.Unlock()
	}
	a.Mark("at once")
	waitMark(t, a, "at once")
	a.Enqueue(tone(3*FrameSamples, 500, 5000))
	a.Mark("after")
	select {
	case m := <-a.Marks():
		t.Fatalf("mark %q while its audio waits for the bridge", m)
	case <-time.After(100 * time.Millisecond):
	}
	if got := g.peers[0].read(50 * time.Millisecond); len(got) != 0 {
		t.Fatalf("%d packets of the queue sent while bridged", len(got))
	}
	br.Stop()
	waitMark(t, a, "after")
	if got := g.peers[0].read(100 * time.Millisecond); len(got) != 3 {
		t.Fatalf("%d packets of the queue after Stop, want 3", len(got))
	}
	checkContinuous(t, g.peers[0].log)
}
