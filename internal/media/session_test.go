package media

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var loopback = netip.MustParseAddr("127.0.0.1")

// listen binds a Session on loopback, closed when the test ends.
func listen(t testing.TB) *Session {
	t.Helper()
	s, err := ListenRTP(loopback, PortRange{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// params are what a leg sending to remote with codec negotiates.
func params(codec Codec, remote netip.AddrPort) Params {
	return Params{Codec: codec, PayloadType: codec.PayloadType(), DTMF: true, DTMFPayloadType: 101, Remote: remote}
}

// sessionPair starts two Sessions talking to each other.
func sessionPair(t testing.TB, codec Codec) (a, b *Session) {
	t.Helper()
	a, b = listen(t), listen(t)
	if err := a.Start(params(codec, b.LocalAddr())); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(params(codec, a.LocalAddr())); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func tone(samples int, freq, amp float64) []int16 {
	pcm := make([]int16, samples)
	for i := range pcm {
		pcm[i] = int16(amp * math.Sin(2*math.Pi*freq*float64(i)/SampleRate))
	}
	return pcm
}

// collect takes n frames from s's Audio, copying them.
func collect(t testing.TB, s *Session, n int, timeout time.Duration) []int16 {
	t.Helper()
	var pcm []int16
	deadline := time.After(timeout)
	for range n {
		select {
		case f, ok := <-s.Audio():
			if !ok {
				t.Fatalf("Audio closed after %d samples", len(pcm))
			}
			if len(f) != FrameSamples {
				t.Fatalf("frame of %d samples", len(f))
			}
			pcm = append(pcm, f...)
		case <-deadline:
			t.Fatalf("%d of %d frames after %v", len(pcm)/FrameSamples, n, timeout)
		}
	}
	return pcm
}

func play(t testing.TB, s *Session, pcm []int16) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Play(ctx, pcm); err != nil {
		t.Fatal(err)
	}
}

// rawPeer is a bare UDP socket standing in for a peer, to see exactly
// what a Session sends and send it exactly what a test needs.
type rawPeer struct {
	t    testing.TB
	conn *net.UDPConn
	seq  uint16
	// log is every packet read so far, silence too, in order.
	log []received
}

func newRawPeer(t testing.TB) *rawPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawPeer{t: t, conn: conn}
}

func (r *rawPeer) addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (r *rawPeer) send(to netip.AddrPort, h rtp.Header, payload []byte) {
	r.t.Helper()
	h.Version = 2
	b, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.conn.WriteToUDPAddrPort(b, to); err != nil {
		r.t.Fatal(err)
	}
}

// sendAudio sends one µ-law frame of pcm with the next sequence number.
func (r *rawPeer) sendAudio(to netip.AddrPort, ssrc, ts uint32, pcm []int16) {
	r.t.Helper()
	payload := make([]byte, len(pcm))
	EncodeULaw(payload, pcm)
	r.seq++
	r.send(to, rtp.Header{PayloadType: 0, SequenceNumber: r.seq, Timestamp: ts, SSRC: ssrc}, payload)
}

// received is a packet a rawPeer read, when, and where from.
type received struct {
	rtp.Packet
	at   time.Time
	from netip.AddrPort
}

// silent reports whether p is a frame of G.711 silence, what a Session
// sends when nothing is queued.
func (p *received) silent() bool {
	var code byte
	switch p.PayloadType {
	case 0:
		code = 0xFF
	case 8:
		code = 0xD5
	default:
		return false
	}
	if len(p.Payload) != FrameSamples {
		return false
	}
	for _, b := range p.Payload {
		if b != code {
			return false
		}
	}
	return true
}

// read returns the packets other than silence that arrive until none has
// for quiet.
func (r *rawPeer) read(quiet time.Duration) []received { return r.readFor(quiet, quiet) }

// readFor is read waiting up to first for the first packet. Every packet
// read, silence too, goes to log.
func (r *rawPeer) readFor(first, quiet time.Duration) []received {
	var got []received
	deadline := time.Now().Add(first)
	for {
		p, ok := r.next(deadline)
		if !ok {
			return got
		}
		if !p.silent() {
			got = append(got, p)
			deadline = time.Now().Add(quiet)
		}
	}
}

// capture returns every packet that arrives within d, silence too.
func (r *rawPeer) capture(d time.Duration) []received {
	var got []received
	deadline := time.Now().Add(d)
	for {
		p, ok := r.next(deadline)
		if !ok {
			return got
		}
		got = append(got, p)
	}
}

// next reads one packet, waiting until deadline at most, and logs it.
func (r *rawPeer) next(deadline time.Time) (received, bool) {
	var buf [2048]byte
	r.conn.SetReadDeadline(deadline)
	n, from, err := r.conn.ReadFromUDPAddrPort(buf[:])
	if err != nil {
		return received{}, false
	}
	var p rtp.Packet
	if err := p.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
		r.t.Fatalf("not RTP: %v", err)
	}
	rec := received{p, time.Now(), from}
	r.log = append(r.log, rec)
	return rec, true
}

// checkContinuous checks that pkts, in the order sent, are one RTP stream
// (RFC 3550 §5.1): one SSRC, sequence numbers up by one a packet, and a
// clock up by 160 a 20 ms slot, exactly from one packet to the next
// unless the second starts a talkspurt (its marker set: then it may be
// later, never earlier). The packets of a telephone-event (payload type
// not 0 or 8) share the event's timestamp and take a slot each. It
// returns the indices of the packets with the marker set.
func checkContinuous(t *testing.T, pkts []received) (markers []int) {
	t.Helper()
	var end uint32 // where the last packet's slot ends
	var eventTS uint32
	for i, p := range pkts {
		if p.Marker {
			markers = append(markers, i)
		}
		event := p.PayloadType != 0 && p.PayloadType != 8
		start := p.Timestamp
		if event && i > 0 && !p.Marker && pkts[i-1].PayloadType == p.PayloadType {
			// An event goes on: its slot is the one after the last.
			if p.Timestamp != eventTS {
				t.Errorf("packet %d: event timestamp %d, want the event's %d", i, p.Timestamp, eventTS)
			}
			start = end
		} else if event {
			eventTS = p.Timestamp
		}
		if i > 0 {
			prev := pkts[i-1]
			if p.SSRC != prev.SSRC {
				t.Errorf("packet %d: SSRC %#x after %#x", i, p.SSRC, prev.SSRC)
			}
			if p.SequenceNumber != prev.SequenceNumber+1 {
				t.Errorf("packet %d: sequence number %d after %d", i, p.SequenceNumber, prev.SequenceNumber)
			}
			if d := int32(start - end); d < 0 || d > 0 && !p.Marker {
				t.Errorf("packet %d (%v): timestamp %d, the last slot ended at %d", i, p.Header, start, end)
			}
		}
		end = start + FrameSamples
	}
	return markers
}

// checkMarkers checks pkts, what s sent, are one stream (checkContinuous)
// with the marker set on the packets want. A stall of the process (a
// packet sent late by over 200 ms) makes the stream skip the slots missed
// and start a new talkspurt: with s late, markers beyond want are allowed.
func checkMarkers(t *testing.T, s *Session, pkts []received, want ...int) {
	t.Helper()
	got := checkContinuous(t, pkts)
	if fmt.Sprint(got) == fmt.Sprint(want) {
		return
	}
	extra := map[int]bool{}
	for _, i := range got {
		extra[i] = true
	}
	for _, i := range want {
		if !extra[i] {
			t.Errorf("markers on packets %v, want %v", got, want)
			return
		}
	}
	if st := s.Stats(); st.SendLate == 0 {
		t.Errorf("markers on packets %v, want %v", got, want)
	} else {
		t.Logf("markers on packets %v, want %v: %d packets sent late", got, want, st.SendLate)
	}
}

// waitStats polls s's Stats until ok, for up to 2 s.
func waitStats(t testing.TB, s *Session, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for st := s.Stats(); ; st = s.Stats() {
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// isSilentFrame reports whether a received frame decodes a frame of
// G.711 silence: linear 0 in µ-law, 8 in A-law.
func isSilentFrame(f []int16) bool {
	for _, v := range f {
		if v != f[0] || v > 8 || v < -8 {
			return false
		}
	}
	return true
}

// collectSound takes n frames from s's Audio, skipping the frames of
// silence before them (the peer's stream is continuous).
func collectSound(t testing.TB, s *Session, n int, timeout time.Duration) []int16 {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-s.Audio():
			if !ok {
				t.Fatal("Audio closed")
			}
			if isSilentFrame(f) {
				continue
			}
			return append(append([]int16(nil), f...), collect(t, s, n-1, timeout)...)
		case <-deadline:
			t.Fatalf("no sound after %v", timeout)
		}
	}
}

func TestSessionAudioArrivesIntact(t *testing.T) {
	for _, codec := range []Codec{PCMU, PCMA} {
		t.Run(codec.String(), func(t *testing.T) {
			a, b := sessionPair(t, codec)
			pcm := tone(25*FrameSamples, 440, 12000)
			errc := make(chan error, 1)
			go func() { errc <- a.Play(context.Background(), pcm) }()
			got := collectSound(t, b, 25, 5*time.Second)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			for i := range pcm {
				want := pcm[i]
				if codec == PCMU {
					want = ULawToLinear(LinearToULaw(want))
				} else {
					want = ALawToLinear(LinearToALaw(want))
				}
				if got[i] != want {
					t.Fatalf("sample %d: %d, want %d", i, got[i], want)
				}
			}
			if st := b.Stats(); st.PacketsReceived < 25 || st.PacketsLate != 0 || st.PacketsLost != 0 {
				t.Errorf("receiver stats %+v", st)
			}
		})
	}
}

// TestSessionSendsRTP checks what goes on the wire: payload type,
// sequence numbers, timestamps, SSRC and marker, across silence, two
// Plays and the silence between them: one stream, one talkspurt.
func TestSessionSendsRTP(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMA, peer.addr())); err != nil {
		t.Fatal(err)
	}
	peer.capture(100 * time.Millisecond) // silence
	play(t, s, tone(10*FrameSamples, 1000, 8000))
	first := peer.read(100 * time.Millisecond)
	play(t, s, tone(5*FrameSamples-40, 1000, 8000)) // the last frame padded
	play(t, s, tone(3*FrameSamples, 1000, 8000))
	second := peer.read(100 * time.Millisecond)
	if len(first) != 10 || len(second) != 8 {
		t.Fatalf("%d and %d packets of sound, want 10 and 8", len(first), len(second))
	}
	all := peer.log
	checkMarkers(t, s, all, 0)
	silences := 0
	for i, p := range all {
		if p.PayloadType != 8 || len(p.Payload) != FrameSamples || p.Version != 2 {
			t.Errorf("packet %d: %v", i, p.Header)
		}
		if p.silent() {
			silences++
		}
	}
	if silences < 4 {
		t.Errorf("%d packets of silence before and after the Plays", silences)
	}
	if last := second[4].Payload; string(last[120:]) != string(alawSilence[120:]) || string(last[:120]) == string(alawSilence[:120]) {
		t.Errorf("padded frame % x…% x, want A-law silence in its last 40 samples only", last[:2], last[len(last)-2:])
	}
	if st := s.Stats(); st.PacketsSent < uint64(len(all)) || st.SilenceSent != st.PacketsSent-18 {
		t.Errorf("stats %+v after %d packets, 18 of them sound", st, len(all))
	}
}

// TestSessionPacing checks Play sends 50 packets a second, spread evenly,
// and returns once they are sent. A sender starved by a busy machine
// catches up in a burst, as it should, so the timing is judged on the best
// of three attempts.
func TestSessionPacing(t *testing.T) {
	var problems []string
	for attempt := 0; attempt < 3; attempt++ {
		if problems = pacingProblems(t); len(problems) == 0 {
			return
		}
		t.Logf("attempt %d: %v", attempt+1, problems)
	}
	t.Errorf("pacing: %v", problems)
}

func pacingProblems(t *testing.T) []string {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	gotc := make(chan []received)
	go func() { gotc <- peer.readFor(time.Second, 100*time.Millisecond) }()
	start := time.Now()
	play(t, s, tone(50*FrameSamples, 300, 5000))
	took := time.Since(start)
	got := <-gotc
	if len(got) != 50 {
		t.Fatalf("%d packets, want 50", len(got))
	}
	var problems []string
	// The first packet goes in the stream's next slot, within 20 ms, the
	// 50th 49 frames later.
	if took < 980*time.Millisecond-frameDuration || took > 1100*time.Millisecond {
		problems = append(problems, fmt.Sprintf("Play took %v for 1 s of audio", took))
	}
	span := got[49].at.Sub(got[0].at)
	if span < 940*time.Millisecond || span > 1040*time.Millisecond {
		problems = append(problems, fmt.Sprintf("50 packets over %v, want 980 ms", span))
	}
	// Evenly: no ten packets in much less than their 200 ms.
	for i := 10; i < len(got); i++ {
		if d := got[i].at.Sub(got[i-10].at); d < 150*time.Millisecond {
			problems = append(problems, fmt.Sprintf("packets %d-%d within %v", i-10, i, d))
		}
	}
	return problems
}

func TestSessionDTMF(t *testing.T) {
	a, b := sessionPair(t, PCMU)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, d := range "159#" {
		if err := a.SendDigit(ctx, d, 60*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if got := readDigits(b, 200*time.Millisecond); got != "159#" {
		t.Errorf("digits %q, want %q", got, "159#")
	}
	// 60 ms: 2 updates and 3 ends a digit, and silence in between.
	if st := a.Stats(); st.PacketsSent-st.SilenceSent != 4*5 {
		t.Errorf("stats %+v, want 20 packets other than silence", st)
	}
}

func readDigits(s *Session, quiet time.Duration) string {
	var got []rune
	for {
		select {
		case r := <-s.Digits():
			got = append(got, r)
		case <-time.After(quiet):
			return string(got)
		}
	}
}

// TestSessionDTMFOnTheWire checks what SendDigit sends (RFC 4733 §2.5.1):
// the events take their slots in the stream, between audio.
func TestSessionDTMFOnTheWire(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	p := params(PCMU, peer.addr())
	p.DTMFPayloadType = 96
	if err := s.Start(p); err != nil {
		t.Fatal(err)
	}
	play(t, s, tone(2*FrameSamples, 500, 1000))
	if err := s.SendDigit(context.Background(), '*', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	play(t, s, tone(FrameSamples, 500, 1000))
	got := peer.read(100 * time.Millisecond)
	if len(got) != 2+7+1 {
		t.Fatalf("%d packets, want 10", len(got))
	}
	event := 0
	for peer.log[event].PayloadType != 96 {
		event++
	}
	checkMarkers(t, s, peer.log, 0, event)
	events := got[2:9]
	want, _ := DTMFEvents('*', 100*time.Millisecond)
	for i, p := range events {
		e, err := ParseDTMFEvent(p.Payload)
		if err != nil || e != want[i] {
			t.Errorf("event packet %d: %+v, want %+v", i, e, want[i])
		}
		if p.PayloadType != 96 || p.Timestamp != events[0].Timestamp || p.Marker != (i == 0) {
			t.Errorf("event packet %d: %v", i, p.Header)
		}
		if i > 0 && p.SequenceNumber != events[i-1].SequenceNumber+1 {
			t.Errorf("event packet %d: sequence number %d", i, p.SequenceNumber)
		}
	}
	if after := got[9]; after.Timestamp < events[0].Timestamp+7*FrameSamples || after.PayloadType != 0 {
		t.Errorf("audio after the event: %v", after.Header)
	}
	if err := s.SendDigit(context.Background(), 'x', time.Second); err == nil {
		t.Error("SendDigit('x') succeeded")
	}
}

// TestSessionDTMFRobust sends a receiver the packets a lossy network or a
// sloppy sender delivers: each press is reported once.
func TestSessionDTMFRobust(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	to := s.LocalAddr()
	var seq uint16 = 1000
	event := func(code uint8, ts uint32, marker, end bool, dur uint16, reuseSeq bool) {
		if !reuseSeq {
			seq++
		}
		var b [4]byte
		DTMFEvent{Event: code, End: end, Volume: 10, Duration: dur}.MarshalTo(b[:])
		peer.send(to, rtp.Header{PayloadType: 101, SequenceNumber: seq, Timestamp: ts, SSRC: 7, Marker: marker}, b[:])
	}
	// '4': complete, its end packets duplicated by the network (same
	// sequence numbers) and repeated by the sender (new ones).
	event(4, 1000, true, false, 160, false)
	event(4, 1000, false, false, 320, false)
	event(4, 1000, false, true, 480, false)
	event(4, 1000, false, true, 480, true)
	event(4, 1000, false, true, 480, false)
	event(4, 1000, false, true, 480, true)
	event(4, 1000, false, true, 480, false)
	// '2': its first packet lost.
	event(2, 3000, false, false, 320, false)
	event(2, 3000, false, true, 480, false)
	event(2, 3000, false, true, 480, false)
	// '2' again, a new press: only its end packets arrive.
	event(2, 5000, false, true, 480, false)
	event(2, 5000, false, true, 480, false)
	// A late end packet of the first press.
	event(4, 1000, false, true, 480, false)
	if got := readDigits(s, 300*time.Millisecond); got != "422" {
		t.Errorf("digits %q, want %q", got, "422")
	}
}

// TestSessionLatches checks a Session answers the source its packets come
// from, not the address in the SDP, and then ignores other sources.
func TestSessionLatches(t *testing.T) {
	sdpAddr, real, stranger := newRawPeer(t), newRawPeer(t), newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, sdpAddr.addr())); err != nil {
		t.Fatal(err)
	}
	if s.Remote() != sdpAddr.addr() {
		t.Fatalf("Remote %v before any packet, want the SDP's %v", s.Remote(), sdpAddr.addr())
	}
	// Junk and a payload type not negotiated do not latch.
	stranger.conn.WriteToUDPAddrPort([]byte("hello, is this RTP?"), s.LocalAddr())
	stranger.send(s.LocalAddr(), rtp.Header{PayloadType: 13, SequenceNumber: 1, SSRC: 9}, []byte{0})
	time.Sleep(50 * time.Millisecond)
	real.sendAudio(s.LocalAddr(), 42, 0, tone(FrameSamples, 400, 3000))
	collect(t, s, 1, 2*time.Second)
	if s.Remote() != real.addr() {
		t.Fatalf("Remote %v, want the latched %v", s.Remote(), real.addr())
	}
	stranger.sendAudio(s.LocalAddr(), 43, 0, tone(FrameSamples, 400, 3000))
	real.sendAudio(s.LocalAddr(), 42, 160, tone(FrameSamples, 400, 3000))
	collect(t, s, 1, 2*time.Second)
	select {
	case <-s.Audio():
		t.Error("audio from a source not latched to")
	case <-time.After(50 * time.Millisecond):
	}
	play(t, s, tone(3*FrameSamples, 400, 3000))
	if got := real.read(100 * time.Millisecond); len(got) != 3 {
		t.Errorf("latched source got %d packets, want 3", len(got))
	}
	if got := sdpAddr.read(10 * time.Millisecond); len(got) != 0 {
		t.Errorf("SDP address got %d packets after the latch", len(got))
	}
	if st := s.Stats(); st.PacketsIgnored != 3 || st.PacketsReceived != 2 {
		t.Errorf("stats %+v, want 3 ignored and 2 received", st)
	}
	// A re-INVITE naming the same address keeps the latch; one naming
	// a new address undoes it.
	s.Update(params(PCMA, sdpAddr.addr()))
	if s.Remote() != real.addr() {
		t.Errorf("Remote %v after a re-INVITE to the same address", s.Remote())
	}
	s.Update(params(PCMU, newRawPeer(t).addr()))
	if s.Remote() == real.addr() {
		t.Errorf("Remote %v after Update", s.Remote())
	}
	stranger.sendAudio(s.LocalAddr(), 43, 160, tone(FrameSamples, 400, 3000))
	collect(t, s, 1, 2*time.Second)
	if s.Remote() != stranger.addr() {
		t.Errorf("Remote %v, want %v latched after Update", s.Remote(), stranger.addr())
	}
}

func TestSessionSequenceTracking(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, FrameSamples)
	EncodeULaw(frame, tone(FrameSamples, 300, 1000))
	send := func(ssrc uint32, seq uint16) {
		peer.send(s.LocalAddr(), rtp.Header{PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * FrameSamples, SSRC: ssrc}, frame)
	}
	// 3 is lost until after 4, 4 comes twice: both late.
	for _, seq := range []uint16{1, 2, 4, 3, 4, 5} {
		send(1, seq)
	}
	// A new SSRC starts its own numbering: nothing late or lost.
	for _, seq := range []uint16{29999} {
		send(2, seq)
	}
	// The same SSRC numbering afresh far behind is a restart, not late.
	for _, seq := range []uint16{30000, 10} {
		send(2, seq)
	}
	collect(t, s, 7, 2*time.Second)
	st := s.Stats()
	if st.PacketsReceived != 7 || st.PacketsLate != 2 || st.PacketsLost != 1 || st.SSRCChanges != 1 {
		t.Errorf("stats %+v, want 7 received, 2 late, 1 lost, 1 SSRC change", st)
	}
}

// TestSessionReframes checks packets of other sizes than 20 ms still make
// 20 ms frames.
func TestSessionReframes(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	pcm := tone(6*FrameSamples, 700, 9000)
	for i := range 4 { // 4 packets of 30 ms
		peer.sendAudio(s.LocalAddr(), 5, uint32(i*240), pcm[i*240:(i+1)*240])
	}
	got := collect(t, s, 6, 2*time.Second)
	for i := range got {
		if want := ULawToLinear(LinearToULaw(pcm[i])); got[i] != want {
			t.Fatalf("sample %d: %d, want %d", i, got[i], want)
		}
	}
}

func TestSessionDropsForSlowReader(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		peer.sendAudio(s.LocalAddr(), 5, uint32(i*FrameSamples), make([]int16, FrameSamples))
	}
	// A packet is counted received before its frame is queued or
	// dropped: wait for the frames too.
	deadline := time.Now().Add(2 * time.Second)
	for st := s.Stats(); (st.PacketsReceived < 40 || st.Dropped+uint64(len(s.Audio())) < 40) && time.Now().Before(deadline); st = s.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.Stats(); st.PacketsReceived != 40 || st.Dropped != 40-audioQueue {
		t.Errorf("stats %+v, want 40 received and %d dropped", st, 40-audioQueue)
	}
	if n := len(s.Audio()); n != audioQueue {
		t.Errorf("%d frames queued, want %d", n, audioQueue)
	}
}

func TestSessionHold(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	// The peer holds the call (a=sendonly): we answer recvonly and stop.
	s.SetDirection(SendOnly.Reverse())
	start := time.Now()
	play(t, s, tone(5*FrameSamples, 300, 5000))
	if took := time.Since(start); took < 70*time.Millisecond {
		t.Errorf("Play on hold took %v for 100 ms", took)
	}
	if got := peer.read(50 * time.Millisecond); len(got) != 0 {
		t.Fatalf("%d packets sent on hold", len(got))
	}
	// Still receiving on hold (music on hold, say).
	peer.sendAudio(s.LocalAddr(), 1, 0, tone(FrameSamples, 300, 5000))
	collect(t, s, 1, 2*time.Second)

	s.SetDirection(SendRecv)
	play(t, s, tone(2*FrameSamples, 300, 5000))
	if got := peer.read(100 * time.Millisecond); len(got) != 2 {
		t.Fatalf("%d packets of sound after the hold, want 2", len(got))
	}
	// The stream resumes with a new talkspurt: silence, then the Play.
	checkMarkers(t, s, peer.log, 0)

	// We hold (sendonly): what arrives is dropped.
	s.SetDirection(SendOnly)
	peer.sendAudio(s.LocalAddr(), 1, 160, tone(FrameSamples, 300, 5000))
	select {
	case <-s.Audio():
		t.Error("audio delivered while sendonly")
	case <-time.After(50 * time.Millisecond):
	}
	if s.Direction() != SendOnly {
		t.Errorf("Direction %v", s.Direction())
	}
}

func TestSessionInactivity(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	s.InactivityTimeout = 150 * time.Millisecond
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	if !s.LastReceived().IsZero() {
		t.Error("LastReceived set before any packet")
	}
	// Packets every 50 ms for 400 ms keep it alive.
	for i := range 8 {
		peer.sendAudio(s.LocalAddr(), 1, uint32(i*FrameSamples), make([]int16, FrameSamples))
		select {
		case <-s.Inactive():
			t.Fatalf("inactive after %d packets", i)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if since := time.Since(s.LastReceived()); since > 100*time.Millisecond {
		t.Errorf("LastReceived %v ago", since)
	}
	stopped := time.Now()
	select {
	case <-s.Inactive():
		if d := time.Since(stopped); d < 100*time.Millisecond {
			t.Errorf("inactive %v after the last packet, timeout 150 ms", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("not inactive 2 s after the last packet")
	}
}

func TestSessionInactivityPausesOnHold(t *testing.T) {
	s := listen(t)
	s.InactivityTimeout = 100 * time.Millisecond
	p := params(PCMU, netip.MustParseAddrPort("127.0.0.1:9"))
	p.Direction = Inactive
	if err := s.Start(p); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Inactive():
		t.Fatal("inactive while the call is on hold (a=inactive)")
	case <-time.After(300 * time.Millisecond):
	}
	s.SetDirection(SendRecv)
	select {
	case <-s.Inactive():
	case <-time.After(2 * time.Second):
		t.Fatal("not inactive once off hold")
	}
}

func TestSessionClose(t *testing.T) {
	t.Run("under way", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		a, b := sessionPair(t, PCMU)
		errc := make(chan error)
		go func() { errc <- a.Play(context.Background(), tone(SampleRate*5, 300, 1000)) }()
		collect(t, b, 2, 2*time.Second)
		a.Close()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Errorf("Play under way returned %v, want ErrClosed", err)
		}
		if err := a.Play(context.Background(), tone(FrameSamples, 300, 1000)); !errors.Is(err, ErrClosed) {
			t.Errorf("Play after Close returned %v", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		b.Close()
		for range b.Audio() { // drains, then ends: Close closed it
		}
		if err := a.Start(params(PCMU, b.LocalAddr())); !errors.Is(err, ErrClosed) {
			t.Errorf("Start after Close: %v", err)
		}
	})
	t.Run("never started", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		s, err := ListenRTP(loopback, PortRange{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Play(context.Background(), tone(FrameSamples, 300, 1000)); err == nil {
			t.Error("Play before Start succeeded")
		}
		s.Close()
		if _, ok := <-s.Audio(); ok {
			t.Error("Audio open after Close")
		}
	})
}

func TestSessionPlayCancel(t *testing.T) {
	a, b := sessionPair(t, PCMU)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- a.Play(ctx, tone(SampleRate*5, 300, 1000)) }()
	collect(t, b, 3, 2*time.Second)
	// A Play queued behind it gives up when its context does.
	queued, cancelQueued := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelQueued()
	if err := a.Play(queued, tone(FrameSamples, 300, 1000)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued Play returned %v, want context.DeadlineExceeded", err)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Play returned %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Play did not return when cancelled")
	}
	// The next Play is not cut short by the cancellation.
	start := time.Now()
	play(t, a, tone(5*FrameSamples, 300, 1000))
	if took := time.Since(start); took < 70*time.Millisecond {
		t.Errorf("Play after a cancelled one took %v for 100 ms", took)
	}
}

func TestSessionStartErrors(t *testing.T) {
	s := listen(t)
	if err := s.Start(Params{}); err == nil {
		t.Error("Start without a codec succeeded")
	}
	if err := s.Start(params(PCMU, netip.MustParseAddrPort("127.0.0.1:9"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(params(PCMU, netip.MustParseAddrPort("127.0.0.1:9"))); err == nil {
		t.Error("second Start succeeded")
	}
	s.Update(Params{Codec: PCMU, Remote: netip.MustParseAddrPort("127.0.0.1:9")})
	if err := s.SendDigit(context.Background(), '1', 0); err == nil || !strings.Contains(err.Error(), "not negotiated") {
		t.Errorf("SendDigit without telephone-event: %v", err)
	}
}

func TestInfoDigitDedupe(t *testing.T) {
	s := listen(t)
	t0 := time.Now()
	steps := []struct {
		digit rune
		via   int
		at    time.Duration
	}{
		{'5', fromRTP, 0},
		{'5', fromInfo, 50 * time.Millisecond}, // the same press by INFO: dropped
		{'5', fromRTP, 300 * time.Millisecond}, // a second press
		{'5', fromInfo, 320 * time.Millisecond},
		{'6', fromInfo, 400 * time.Millisecond},
		{'6', fromRTP, 410 * time.Millisecond},
		{'6', fromInfo, 2 * time.Second}, // a second, long after
	}
	for _, st := range steps {
		s.deliverDigit(st.digit, st.via, t0.Add(st.at))
	}
	s.InfoDigit('#')
	if got := readDigits(s, 10*time.Millisecond); got != "5566#" {
		t.Errorf("digits %q, want %q", got, "5566#")
	}
}

func TestListenRTPPortRange(t *testing.T) {
	// A range of three pairs, odd at both ends: 40101-40108 holds
	// 40102/3, 40104/5 and 40106/7.
	r := PortRange{Min: 40101, Max: 40108}
	var sessions []*Session
	for range 3 {
		s, err := ListenRTP(loopback, r)
		if err != nil {
			t.Skipf("ports in use on this machine: %v", err)
		}
		defer s.Close()
		port := int(s.LocalAddr().Port())
		if port%2 != 0 || port < 40102 || port > 40106 {
			t.Errorf("RTP port %d, want an even one in 40102-40106", port)
		}
		sessions = append(sessions, s)
	}
	if s, err := ListenRTP(loopback, r); err == nil {
		s.Close()
		t.Error("a fourth session found a port")
	} else if !strings.Contains(err.Error(), "no free port pair in 40101-40108") {
		t.Errorf("error %v", err)
	}
	sessions[1].Close()
	s, err := ListenRTP(loopback, r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.LocalAddr() != sessions[1].LocalAddr() {
		t.Errorf("got %v, want the freed %v", s.LocalAddr(), sessions[1].LocalAddr())
	}

	for _, bad := range []PortRange{{Min: 0, Max: 10}, {Min: 20, Max: 10}, {Min: 1, Max: 70000}, {Min: 41001, Max: 41002}} {
		if s, err := ListenRTP(loopback, bad); err == nil {
			s.Close()
			t.Errorf("range %v accepted", bad)
		}
	}
}

func TestRecorder(t *testing.T) {
	a, b := sessionPair(t, PCMU)
	var rec Recorder
	done := make(chan struct{})
	go func() { rec.Record(context.Background(), b.Audio()); close(done) }()
	play(t, a, tone(10*FrameSamples, 440, 8000))
	sound := func() int {
		pcm, n := rec.PCM(), 0
		for i := 0; i+FrameSamples <= len(pcm); i += FrameSamples {
			if !isSilentFrame(pcm[i : i+FrameSamples]) {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(2 * time.Second)
	for sound() < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	b.Close()
	<-done
	if n := sound(); n != 10 {
		t.Fatalf("recorded %d frames of sound, want 10", n)
	}
	var wav strings.Builder
	if err := rec.WriteWAV(&wav); err != nil {
		t.Fatal(err)
	}
	back, err := LoadWAV(strings.NewReader(wav.String()))
	if err != nil || !equal16(back, rec.PCM()) {
		t.Errorf("WAV round trip: %d samples, %v", len(back), err)
	}
}

// TestPerPacketPathDoesNotAllocate pins the rule the media path lives by:
// sending a packet and receiving one allocate nothing, but for a slab of
// received frames once every slabFrames frames handed out.
func TestPerPacketPathDoesNotAllocate(t *testing.T) {
	a, b := listen(t), listen(t)
	a.setParams(params(PCMU, b.LocalAddr()))
	b.setParams(params(PCMU, a.LocalAddr()))
	tx := newSender()
	rx := newReceiver()
	frame := tone(FrameSamples, 440, 8000)
	now := time.Now()
	var ts uint32

	// One packet first, to latch.
	a.writeAudio(tx, frame, ts)
	buf := make([]byte, maxDatagram)
	read := func() {
		n, from, err := b.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		b.receive(rx, buf[:n], from, now)
		<-b.Audio()
	}
	read()
	const runs = 10 * slabFrames
	if allocs := mallocs(runs, func() {
		ts += FrameSamples
		a.writeAudio(tx, frame, ts)
		read()
	}); allocs > runs/slabFrames+1 {
		t.Errorf("%d allocations for %d packets sent and received, want a slab every %d", allocs, runs, slabFrames)
	}
	if allocs := mallocs(runs, func() {
		a.writeEvent(tx, DTMFEvent{Event: 1, Duration: 160}, 0, false)
		n, from, _ := b.conn.ReadFromUDPAddrPort(buf)
		b.receive(rx, buf[:n], from, now)
	}); allocs != 0 {
		t.Errorf("%d allocations for %d event packets, want 0", allocs, runs)
	}
	if st := b.Stats(); st.PacketsReceived != 1+2*(runs+1) {
		t.Errorf("received %d packets, want %d (mallocs runs once more)", st.PacketsReceived, 1+2*(runs+1))
	}
}

// mallocs returns how many heap allocations runs calls of f make, all
// counted (testing.AllocsPerRun rounds an average below one down to 0).
func mallocs(runs int, f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}

// BenchmarkSendReceive measures one 20 ms packet through the per-packet
// path, unpaced: encoded and sent by one Session, received, parsed and
// decoded by another's receive goroutine, and taken from its Audio.
func BenchmarkSendReceive(b *testing.B) {
	for _, codec := range []Codec{PCMU, PCMA} {
		b.Run(codec.String(), func(b *testing.B) {
			tx, rx := listen(b), listen(b)
			tx.setParams(params(codec, rx.LocalAddr()))
			if err := rx.Start(params(codec, tx.LocalAddr())); err != nil {
				b.Fatal(err)
			}
			st := newSender()
			frame := tone(FrameSamples, 440, 8000)
			var ts uint32
			lost := time.NewTimer(time.Hour)
			b.ReportAllocs()
			for b.Loop() {
				ts += FrameSamples
				tx.writeAudio(st, frame, ts)
				lost.Reset(time.Second)
				select {
				case <-rx.Audio():
				case <-lost.C:
					b.Fatal("packet lost on loopback")
				}
			}
			lost.Stop()
		})
	}
}

// TestSessionRelatchesAfterQuiet checks a peer that moves without a
// re-INVITE (its NAT binding changed) is followed once the source latched
// to has been quiet for relatchAfter, and not before.
func TestSessionRelatchesAfterQuiet(t *testing.T) {
	s := listen(t)
	s.setParams(params(PCMU, netip.MustParseAddrPort("127.0.0.1:9")))
	rx := newReceiver()
	first := netip.MustParseAddrPort("192.0.2.1:4000")
	moved := netip.MustParseAddrPort("192.0.2.1:4002")
	packet := func(seq uint16) []byte {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, SSRC: 1}, Payload: make([]byte, FrameSamples)}).Marshal()
		return b
	}
	t0 := time.Now()
	s.receive(rx, packet(1), first, t0)
	s.receive(rx, packet(2), moved, t0.Add(relatchAfter/2))
	if s.Remote() != first {
		t.Fatalf("Remote %v, want %v: moved before the latched source went quiet", s.Remote(), first)
	}
	s.receive(rx, packet(3), moved, t0.Add(relatchAfter))
	if s.Remote() != moved {
		t.Fatalf("Remote %v, want %v after %v of quiet", s.Remote(), moved, relatchAfter)
	}
	if st := s.Stats(); st.PacketsReceived != 2 || st.PacketsIgnored != 1 {
		t.Errorf("stats %+v", st)
	}
}
