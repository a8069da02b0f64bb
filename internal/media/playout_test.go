package media

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestStreamIsContinuous checks an idle Session sends a steady stream of
// silence: 50 packets a second, one stream, no gap a telephony peer would
// notice. The bounds leave room for a loaded machine: the numbering and
// the clock are exact, the count and the timing generous.
func TestStreamIsContinuous(t *testing.T) {
	for _, codec := range []Codec{PCMU, PCMA} {
		t.Run(codec.String(), func(t *testing.T) {
			peer := newRawPeer(t)
			s := listen(t)
			if err := s.Start(params(codec, peer.addr())); err != nil {
				t.Fatal(err)
			}
			got := peer.capture(2 * time.Second)
			if len(got) < 90 || len(got) > 101 {
				t.Errorf("%d packets in 2 s, want 100", len(got))
			}
			checkMarkers(t, s, got, 0)
			var gap time.Duration
			for i, p := range got {
				if !p.silent() || p.PayloadType != codec.PayloadType() {
					t.Fatalf("packet %d is not %v silence: %v % x…", i, codec, p.Header, p.Payload[:4])
				}
				if i > 0 {
					gap = max(gap, p.at.Sub(got[i-1].at))
				}
			}
			// The clock says 20 ms a packet; arrival may wander a little.
			if span := time.Duration(got[len(got)-1].Timestamp-got[0].Timestamp) * time.Second / SampleRate; span != time.Duration(len(got)-1)*frameDuration {
				t.Errorf("timestamps span %v for %d packets", span, len(got))
			}
			// Timed as read, which a loaded machine delays: judged
			// loosely, the counts and the clock above are the measure.
			t.Logf("%d packets, longest gap %v", len(got), gap)
			if gap > 500*time.Millisecond {
				t.Errorf("a gap of %v between packets", gap)
			}
			if st := s.Stats(); st.SilenceSent != st.PacketsSent || st.PacketsSent < uint64(len(got)) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestStreamContinuityEverywhere takes one Session's stream through
// everything it does: silence, queued audio, silence, a digit, a Bridge
// relaying the other leg, the Bridge stopped, silence. The far end sees
// one stream throughout: one SSRC, sequence numbers without a gap, a
// clock 160 a packet, and a marker on the first packet, the digit's
// first, the first relayed, and the first after the Bridge.
func TestStreamContinuityEverywhere(t *testing.T) {
	g := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMU, netip.AddrPort{})})
	s, caller := g.legs[0], g.peers[0]
	waitSent := func(n uint64) {
		t.Helper()
		waitStats(t, s, func(st Stats) bool { return st.PacketsSent >= n })
	}

	waitSent(5) // silence
	if err := s.Enqueue(tone(5*FrameSamples, 600, 6000)); err != nil {
		t.Fatal(err)
	}
	if err := s.Mark("audio"); err != nil {
		t.Fatal(err)
	}
	waitMark(t, s, "audio")
	waitSent(s.Stats().PacketsSent + 3) // silence
	if err := s.SendDigit(context.Background(), '7', 60*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitSent(s.Stats().PacketsSent + 3) // silence
	br := g.bridge()
	g.sendAudio(1, 5, 0, codes(FrameSamples, 9))
	if got := caller.read(200 * time.Millisecond); len(got) != 5+5+5 {
		t.Fatalf("%d packets other than silence, want 5 of audio, 5 of the digit, 5 relayed", len(got))
	}
	br.Stop()
	waitSent(s.Stats().PacketsSent + 5) // silence again
	caller.capture(100 * time.Millisecond)

	log := caller.log
	var want []int
	kinds := ""
	for i, p := range log {
		var kind byte
		switch {
		case p.PayloadType == 101:
			kind = 'd'
		case p.silent():
			kind = '.'
		case p.Payload[0] == codes(1, 9)[0]:
			kind = 'r'
		default:
			kind = 'a'
		}
		if i == 0 || kind != kinds[i-1] && (kind == 'd' || kind == 'r' || kinds[i-1] == 'r') {
			want = append(want, i)
		}
		kinds += string(kind)
	}
	t.Logf("the stream: %s", kinds)
	checkMarkers(t, s, log, want...)
	// Silence, audio, silence, digit, silence, relayed, silence.
	for _, part := range []string{"..", ".aaaaa.", ".ddddd.", ".rrrrr.", "r.."} {
		if !contains(kinds, part) {
			t.Errorf("the stream %s lacks %s", kinds, part)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// waitMark waits up to 2 s for the next mark, and fails unless it is
// name.
func waitMark(t testing.TB, s *Session, name string) {
	t.Helper()
	select {
	case m := <-s.Marks():
		if m != name {
			t.Fatalf("mark %q, want %q", m, name)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("no mark %q after 2 s", name)
	}
}

// TestEnqueuePacesAheadOfRealTime queues a second of audio at once: it
// goes out 50 packets a second, spread evenly, while Enqueue returned at
// once. Judged on the best of three attempts, as TestSessionPacing.
func TestEnqueuePacesAheadOfRealTime(t *testing.T) {
	var problems []string
	for attempt := range 3 {
		if problems = enqueuePacingProblems(t); len(problems) == 0 {
			return
		}
		t.Logf("attempt %d: %v", attempt+1, problems)
	}
	t.Errorf("pacing: %v", problems)
}

func enqueuePacingProblems(t *testing.T) []string {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	pcm := tone(50*FrameSamples, 300, 5000)
	start := time.Now()
	for i := 0; i < len(pcm); i += 333 { // in pieces that are no frames
		if err := s.Enqueue(pcm[i:min(i+333, len(pcm))]); err != nil {
			t.Fatal(err)
		}
	}
	var problems []string
	if took := time.Since(start); took > 50*time.Millisecond {
		problems = append(problems, fmt.Sprintf("Enqueue took %v", took))
	}
	if q := s.Queued(); q < 900*time.Millisecond || q > time.Second {
		problems = append(problems, fmt.Sprintf("Queued %v after queueing 1 s", q))
	}
	got := peer.readFor(time.Second, 100*time.Millisecond)
	if len(got) != 50 {
		t.Fatalf("%d packets of sound, want 50", len(got))
	}
	for i, p := range got {
		want := make([]byte, FrameSamples)
		EncodeULaw(want, pcm[i*FrameSamples:(i+1)*FrameSamples])
		if string(p.Payload) != string(want) {
			t.Fatalf("packet %d: not the audio queued", i)
		}
	}
	checkMarkers(t, s, peer.log, 0)
	span := got[49].at.Sub(got[0].at)
	if span < 940*time.Millisecond || span > 1040*time.Millisecond {
		problems = append(problems, fmt.Sprintf("50 packets over %v, want 980 ms", span))
	}
	for i := 10; i < len(got); i++ {
		if d := got[i].at.Sub(got[i-10].at); d < 150*time.Millisecond {
			problems = append(problems, fmt.Sprintf("packets %d-%d within %v", i-10, i, d))
		}
	}
	if q := s.Queued(); q != 0 {
		problems = append(problems, fmt.Sprintf("Queued %v once sent", q))
	}
	return problems
}

// TestStreamedAudioGoesAsItComes plays audio as a streaming agent sends
// it, a frame every 20 ms in real time: each frame goes out as it comes,
// not in the Session's next slot (up to 20 ms later), and the frames make
// one talkspurt, each in the slot after the one before, with no silence
// between them. Two frames come late (45 ms: two slots), together: they
// take their places all the same, at once, and the frames after them go
// as they come.
func TestStreamedAudioGoesAsItComes(t *testing.T) {
	var problems []string
	for attempt := range 3 {
		if problems = streamedAudioProblems(t); len(problems) == 0 {
			return
		}
		t.Logf("attempt %d: %v", attempt+1, problems)
	}
	t.Errorf("streamed audio: %v", problems)
}

func streamedAudioProblems(t *testing.T) []string {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	peer.capture(110 * time.Millisecond) // silence; the slots' phase is the Session's own
	const frames, late = 40, 20
	pcm := make([][]int16, frames)
	byPayload := map[string]int{}
	for i := range pcm {
		pcm[i] = tone(FrameSamples, 200+20*float64(i), 6000)
		b := make([]byte, FrameSamples)
		EncodeULaw(b, pcm[i])
		byPayload[string(b)] = i
	}
	queued := make([]time.Time, frames)
	done := make(chan struct{})
	start := time.Now().Add(7 * time.Millisecond)
	go func() {
		defer close(done)
		for i := range frames {
			at := start.Add(time.Duration(i) * frameDuration)
			if i == late || i == late+1 {
				at = start.Add(late*frameDuration + 45*time.Millisecond)
			}
			time.Sleep(time.Until(at))
			queued[i] = time.Now()
			if err := s.Enqueue(pcm[i]); err != nil {
				t.Error(err)
			}
		}
	}()
	got := peer.readFor(time.Second, 200*time.Millisecond)
	<-done
	if len(got) != frames {
		t.Fatalf("%d packets of audio, want %d", len(got), frames)
	}
	var problems []string
	var delays []time.Duration
	for k, p := range got {
		i, ok := byPayload[string(p.Payload)]
		if !ok || i != k {
			t.Fatalf("packet %d of audio is frame %d (%v), want %d", k, i, ok, k)
		}
		if k > 0 && p.Timestamp-got[k-1].Timestamp != FrameSamples {
			problems = append(problems, fmt.Sprintf("frame %d %d samples after the one before", k, p.Timestamp-got[k-1].Timestamp))
		}
		if k > 0 && p.SequenceNumber != got[k-1].SequenceNumber+1 {
			problems = append(problems, fmt.Sprintf("frame %d: packets between it and the one before", k))
		}
		delays = append(delays, p.at.Sub(queued[i]))
	}
	if got[late].at.Sub(queued[late]) > 10*time.Millisecond || got[late+1].at.Sub(queued[late+1]) > 10*time.Millisecond {
		problems = append(problems, fmt.Sprintf("the late frames went %v and %v after they came",
			got[late].at.Sub(queued[late]), got[late+1].at.Sub(queued[late+1])))
	}
	slices.Sort(delays)
	// In its slot, a frame would wait 10 ms on average (up to 20).
	if med := delays[len(delays)/2]; med > 4*time.Millisecond {
		problems = append(problems, fmt.Sprintf("frames went a median %v after they came", med))
	}
	// One stream: a marker on its first packet, and on the first after the
	// audio, if it came: the slots left open after the last frame were
	// given up, nothing sent in them.
	want := []int{0}
	for i, p := range peer.log {
		if i > 0 && p.silent() && !peer.log[i-1].silent() {
			want = append(want, i)
			// How many depends on when the last frame came in its slot.
			if d := p.Timestamp - peer.log[i-1].Timestamp; d < 3*FrameSamples || d > (openSlots+1)*FrameSamples {
				problems = append(problems, fmt.Sprintf("silence %d samples after the last frame, want 2 to %d slots left open", d, openSlots))
			}
		}
	}
	checkMarkers(t, s, peer.log, want...)
	return problems
}

// TestLateFrameAfterClearStartsAfresh: a frame that comes late after a
// live stream fills the slot left open for it, in its place; after a
// Clear (barge-in) what comes is new audio, which takes no open slot:
// it starts a talkspurt of its own.
func TestLateFrameAfterClearStartsAfresh(t *testing.T) {
	for _, clear := range []bool{false, true} {
		t.Run(fmt.Sprint("clear=", clear), func(t *testing.T) {
			peer := newRawPeer(t)
			s := listen(t)
			if err := s.Start(params(PCMU, peer.addr())); err != nil {
				t.Fatal(err)
			}
			peer.capture(70 * time.Millisecond)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := range 6 {
					if i == 5 {
						time.Sleep(30 * time.Millisecond) // a slot late
						if clear {
							s.Clear()
						}
					}
					if err := s.Enqueue(tone(FrameSamples, 400, 6000)); err != nil {
						t.Error(err)
					}
					time.Sleep(frameDuration)
				}
			}()
			got := peer.readFor(time.Second, 150*time.Millisecond)
			<-done
			if len(got) != 6 {
				t.Fatalf("%d packets of audio, want 6", len(got))
			}
			last, prev := got[5], got[4]
			if filled := last.Timestamp-prev.Timestamp == FrameSamples && !last.Marker; filled == clear {
				t.Errorf("the last frame %d samples after the one before, marker %v", last.Timestamp-prev.Timestamp, last.Marker)
			}
		})
	}
}

// TestStreamNeverRunsAhead: audio queued ahead of real time goes one frame
// a slot, whether it comes at once or a frame at a time faster than real
// time; the first frame may go at once, no more than one frame ahead of
// the stream's clock.
func TestStreamNeverRunsAhead(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	peer.capture(70 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 { // 400 ms of audio in 40 ms
			if err := s.Enqueue(tone(FrameSamples, 300, 6000)); err != nil {
				t.Error(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	got := peer.readFor(time.Second, 100*time.Millisecond)
	<-done
	if len(got) != 20 {
		t.Fatalf("%d packets of audio, want 20", len(got))
	}
	if span := got[19].at.Sub(got[0].at); span < 360*time.Millisecond {
		t.Errorf("20 frames sent over %v, want 380 ms", span)
	}
	for k := 1; k < len(got); k++ {
		if d := got[k].Timestamp - got[k-1].Timestamp; d != FrameSamples {
			t.Errorf("frame %d %d samples after the one before", k, d)
		}
	}
}

// TestEnqueueOverflow fills a queue that is not drained (the Session is
// not started): what does not fit is dropped, counted and reported, and
// the queue holds its limit.
// TestWaitSent: WaitSent returns true once the audio queued has gone, and
// false, at once, when the leg is gone or the wait is cancelled.
func TestWaitSent(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	if !s.WaitSent(t.Context(), nil) {
		t.Error("WaitSent with nothing queued = false")
	}
	if err := s.Enqueue(tone(5*FrameSamples, 300, 5000)); err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	close(gone)
	if s.WaitSent(t.Context(), gone) {
		t.Error("WaitSent on a gone leg with audio queued = true")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if s.WaitSent(ctx, nil) {
		t.Error("WaitSent cancelled with audio queued = true")
	}
	start := time.Now()
	if !s.WaitSent(t.Context(), nil) || s.Queued() != 0 {
		t.Errorf("WaitSent = false or %v left queued", s.Queued())
	}
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Errorf("WaitSent returned after %v, before 100 ms of audio could go", took)
	}
}

func TestEnqueueOverflow(t *testing.T) {
	s := listen(t)
	s.PlayoutLimit = 200 * time.Millisecond
	steps := []struct {
		samples  int
		err      error
		queued   time.Duration
		overflow uint64
	}{
		{120 * 8, nil, 120 * time.Millisecond, 0},
		{80 * 8, nil, 200 * time.Millisecond, 0},
		{1, ErrPlayoutFull, 200 * time.Millisecond, 1},
		{50 * 8, ErrPlayoutFull, 200 * time.Millisecond, 4},
	}
	for i, st := range steps {
		if err := s.Enqueue(make([]int16, st.samples)); !errors.Is(err, st.err) {
			t.Errorf("step %d: Enqueue returned %v, want %v", i, err, st.err)
		}
		if q := s.Queued(); q != st.queued {
			t.Errorf("step %d: Queued %v, want %v", i, q, st.queued)
		}
		if o := s.Stats().PlayoutOverflow; o != st.overflow {
			t.Errorf("step %d: PlayoutOverflow %d, want %d", i, o, st.overflow)
		}
	}
	// Partly fits: 100 ms of 150 ms after a Clear.
	s.Clear()
	if err := s.Enqueue(make([]int16, 150*8)); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(make([]int16, 150*8)); !errors.Is(err, ErrPlayoutFull) {
		t.Errorf("Enqueue past the limit returned %v", err)
	}
	if q := s.Queued(); q != 200*time.Millisecond {
		t.Errorf("Queued %v, want the 200 ms limit", q)
	}
	// The default limit is 30 s.
	d := listen(t)
	if err := d.Enqueue(make([]int16, 30*SampleRate)); err != nil {
		t.Errorf("30 s with the default limit: %v", err)
	}
	if err := d.Enqueue(make([]int16, 1)); !errors.Is(err, ErrPlayoutFull) {
		t.Errorf("past 30 s: %v", err)
	}
	s.Close()
	if err := s.Enqueue(make([]int16, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close: %v", err)
	}
}

// TestMarks checks marks come in order, each once the audio queued before
// it has been sent, or would have been on hold.
func TestMarks(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  Direction
	}{
		{"sending", SendRecv},
		{"on hold", RecvOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peer := newRawPeer(t)
			s := listen(t)
			p := params(PCMU, peer.addr())
			p.Direction = tc.dir
			if err := s.Start(p); err != nil {
				t.Fatal(err)
			}
			// Nothing queued: at the next slot.
			start := time.Now()
			s.Mark("empty")
			waitMark(t, s, "empty")
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("a mark with nothing queued took %v", d)
			}
			// Two pieces of audio, a mark after each.
			s.Enqueue(tone(3*FrameSamples, 500, 5000))
			s.Mark("one")
			s.Enqueue(tone(4*FrameSamples-50, 700, 5000)) // padded before its mark
			s.Mark("two")
			s.Mark("three")
			start = time.Now()
			for _, want := range []struct {
				name  string
				sound int
			}{{"one", 3}, {"two", 7}, {"three", 7}} {
				waitMark(t, s, want.name)
				// Sent before the mark was delivered, so in the socket
				// already: never fewer. (More may follow at once when the
				// pacer catches up after a stall.)
				peer.capture(10 * time.Millisecond)
				sound := 0
				for _, p := range peer.log {
					if !p.silent() {
						sound++
					}
				}
				if tc.dir == SendRecv && sound < want.sound {
					t.Errorf("mark %q after %d packets of sound, want %d", want.name, sound, want.sound)
				}
			}
			// On hold the queue runs in real time all the same.
			if d := time.Since(start); d < 100*time.Millisecond {
				t.Errorf("7 frames marked in %v", d)
			}
			if tc.dir != SendRecv && len(peer.log) != 0 {
				t.Errorf("%d packets sent on hold", len(peer.log))
			}
			if q := s.Queued(); q != 0 {
				t.Errorf("Queued %v", q)
			}
		})
	}
}

// TestClear checks Clear stops the audio within one frame, makes a Play
// under way return ErrCleared, and delivers the pending marks in order.
func TestClear(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		s.Enqueue(tone(SampleRate, 400, 5000))
		s.Mark(fmt.Sprint(i))
	}
	played := make(chan error, 1)
	go func() { played <- s.Play(context.Background(), tone(SampleRate, 400, 5000)) }()
	waitStats(t, s, func(st Stats) bool { return st.PacketsSent-st.SilenceSent >= 5 })
	select {
	case m := <-s.Marks():
		t.Fatalf("mark %q before its audio went", m)
	default:
	}
	s.po.mu.Lock() // the packets from this sequence number on are the Clear's
	s.clearLocked()
	seq := s.out.seq
	s.po.mu.Unlock()
	for i := range 5 {
		waitMark(t, s, fmt.Sprint(i))
	}
	if err := <-played; !errors.Is(err, ErrCleared) {
		t.Errorf("Play returned %v, want ErrCleared", err)
	}
	if q := s.Queued(); q != 0 {
		t.Errorf("Queued %v after Clear", q)
	}
	waitStats(t, s, func(st Stats) bool { return st.SilenceSent >= 5 })
	after := 0
	for _, p := range peer.capture(100 * time.Millisecond) {
		if int16(p.SequenceNumber-seq) >= 0 {
			after++
			if !p.silent() {
				t.Errorf("packet %d after Clear is not silence", p.SequenceNumber)
			}
		}
	}
	if after == 0 {
		t.Error("no packet after Clear")
	}
	checkContinuous(t, peer.log)
	// The queue takes audio again.
	s.Enqueue(tone(FrameSamples, 400, 5000))
	s.Mark("again")
	waitMark(t, s, "again")
}

// TestTooManyMarks checks the marks a Session holds are bounded, pending
// and delivered unread together.
func TestTooManyMarks(t *testing.T) {
	s := listen(t) // not started: nothing is delivered but by Clear
	for i := range maxMarks {
		if err := s.Mark(fmt.Sprint(i)); err != nil {
			t.Fatalf("mark %d: %v", i, err)
		}
	}
	if err := s.Mark("one more"); !errors.Is(err, ErrTooManyMarks) {
		t.Errorf("mark past the bound: %v", err)
	}
	s.Clear() // delivered, not read: still counted
	if err := s.Mark("one more"); !errors.Is(err, ErrTooManyMarks) {
		t.Errorf("mark past the bound after Clear: %v", err)
	}
	for i := range 10 {
		if m := <-s.Marks(); m != fmt.Sprint(i) {
			t.Fatalf("mark %q, want %d", m, i)
		}
	}
	if err := s.Mark("room"); err != nil {
		t.Errorf("mark once some were read: %v", err)
	}
	s.Close()
	for range s.Marks() { // closed by Close
	}
}

// TestPartialFrames checks how audio that is no whole number of frames
// is cut: pieces make one stream, a short tail waits up to a frame's time
// for more and is then padded, and a mark pads it at once.
func TestPartialFrames(t *testing.T) {
	s := listen(t)
	s.setParams(params(PCMU, netip.MustParseAddrPort("127.0.0.1:9")))
	tx := newSender()
	t0 := time.Now()
	take := func(at time.Duration) []int16 {
		s.po.mu.Lock()
		defer s.po.mu.Unlock()
		if s.po.n == 0 {
			return nil
		}
		f := s.po.nextFrame(tx, t0.Add(at))
		if f == nil {
			return nil
		}
		it := s.po.front()
		if it.off == len(it.pcm) {
			s.po.pop()
		}
		return append([]int16(nil), f...)
	}
	ramp := func(from, n int) []int16 {
		pcm := make([]int16, n)
		for i := range pcm {
			pcm[i] = int16(from + i + 1)
		}
		return pcm
	}
	s.Enqueue(ramp(0, 100))
	s.po.appended = t0
	if f := take(10 * time.Millisecond); f != nil {
		t.Fatalf("a 100-sample tail went %v after it came", 10*time.Millisecond)
	}
	s.Enqueue(ramp(100, 100)) // 200: a frame and 40 samples
	s.po.appended = t0.Add(15 * time.Millisecond)
	if f := take(20 * time.Millisecond); len(f) != FrameSamples || f[0] != 1 || f[159] != 160 {
		t.Fatalf("first frame %v…", f[:4])
	}
	if f := take(30 * time.Millisecond); f != nil {
		t.Fatal("the 40-sample tail went before a frame's time")
	}
	f := take(40 * time.Millisecond)
	if len(f) != FrameSamples || f[0] != 161 || f[39] != 200 || f[40] != 0 || f[159] != 0 {
		t.Fatalf("padded tail %v", f)
	}
	if q := s.Queued(); q != 0 {
		t.Errorf("Queued %v", q)
	}
	// A mark pads at once.
	s.Enqueue(ramp(0, 30))
	s.po.appended = t0.Add(40 * time.Millisecond)
	s.Mark("m")
	if f := take(41 * time.Millisecond); len(f) != FrameSamples || f[29] != 30 || f[30] != 0 {
		t.Fatalf("tail before a mark %v", f)
	}
	// Pieces across blocks make whole frames.
	for range 3 {
		s.Clear()
		s.Enqueue(ramp(0, blockSamples-10))
		s.Enqueue(ramp(blockSamples-10, 20))
		if s.po.n != 2 {
			t.Fatalf("%d items for a block and 10 samples", s.po.n)
		}
		n := 0
		for f := take(time.Hour); f != nil; f = take(time.Hour) {
			if f[0] != int16(n*FrameSamples+1) {
				t.Fatalf("frame %d starts with %d", n, f[0])
			}
			n++
		}
		if n != blockSamples/FrameSamples+1 {
			t.Errorf("%d frames", n)
		}
	}
}

// TestFramesStayIntact holds every frame received, as a slow consumer
// does, until all have come: none was written over.
func TestFramesStayIntact(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMU, peer.addr())); err != nil {
		t.Fatal(err)
	}
	const n = 3*slabFrames + 7
	frames := make(chan Frame, n)
	s.SetAudioSink(frames, 7)
	sent := make([][]int16, n)
	for i := range sent {
		sent[i] = tone(FrameSamples, float64(200+10*i), 6000)
		peer.sendAudio(s.LocalAddr(), 9, uint32(i*FrameSamples), sent[i])
		if i%20 == 19 {
			time.Sleep(5 * time.Millisecond) // not all at once into the socket buffer
		}
	}
	var got []Frame
	timeout := time.After(5 * time.Second)
	for len(got) < n {
		select {
		case f := <-frames:
			got = append(got, f)
		case <-timeout:
			t.Fatalf("%d frames of %d; stats %+v", len(got), n, s.Stats())
		}
	}
	for i, f := range got {
		if f.Leg != 7 || f.At.IsZero() || len(f.PCM) != FrameSamples || cap(f.PCM) != FrameSamples {
			t.Fatalf("frame %d: leg %d, at %v, %d samples (cap %d)", i, f.Leg, f.At, len(f.PCM), cap(f.PCM))
		}
		for k, v := range f.PCM {
			if want := ULawToLinear(LinearToULaw(sent[i][k])); v != want {
				t.Fatalf("frame %d sample %d: %d, want %d: written over", i, k, v, want)
			}
		}
	}
	select {
	case f := <-s.Audio():
		t.Errorf("a frame of %d samples on Audio with a sink set", len(f))
	default:
	}
	// Back to Audio.
	s.SetAudioSink(nil, 0)
	peer.sendAudio(s.LocalAddr(), 9, uint32(n*FrameSamples), sent[0])
	collect(t, s, 1, 2*time.Second)
}

// TestAudioHandler checks a handler gets the frames, and that a frame it
// refuses is counted as dropped.
func TestAudioHandler(t *testing.T) {
	peer := newRawPeer(t)
	s := listen(t)
	if err := s.Start(params(PCMA, peer.addr())); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var legs []int
	s.SetAudioHandler(3, func(f Frame) bool {
		mu.Lock()
		defer mu.Unlock()
		legs = append(legs, f.Leg)
		return len(legs) <= 2
	})
	payload := make([]byte, FrameSamples)
	for i := range 3 {
		peer.send(s.LocalAddr(), rtp.Header{PayloadType: 8, SequenceNumber: uint16(i), Timestamp: uint32(i * FrameSamples), SSRC: 4}, payload)
	}
	st := waitStats(t, s, func(st Stats) bool { return st.Dropped == 1 })
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(legs) != "[3 3 3]" || st.PacketsReceived != 3 {
		t.Errorf("handler saw legs %v; stats %+v", legs, st)
	}
}

// TestBridgeListens checks a listening Bridge hands both legs' audio,
// each decoded with its leg's codec and labelled, to one channel, and a
// Bridge that does not listen hands out none.
func TestBridgeListens(t *testing.T) {
	for _, listening := range []bool{true, false} {
		t.Run(fmt.Sprint("listen=", listening), func(t *testing.T) {
			g := newBridgeRig(t, [2]Params{params(PCMU, netip.AddrPort{}), params(PCMA, netip.AddrPort{})})
			frames := make(chan Frame, 64)
			g.legs[0].SetAudioSink(frames, 0)
			g.legs[1].SetAudioSink(frames, 1)
			br := g.bridge()
			br.Listen(listening)
			payloads := [2][]byte{codes(FrameSamples, 0), codes(FrameSamples, 100)}
			g.sendAudio(0, 3, 0, payloads[0])
			g.sendAudio(1, 2, 8, payloads[1])
			for i := range 2 {
				if got := g.peers[1-i].read(100 * time.Millisecond); len(got) != 3-i {
					t.Fatalf("leg %d relayed %d packets, want %d", i, len(got), 3-i)
				}
			}
			if !listening {
				if len(frames) != 0 {
					t.Errorf("%d frames from a Bridge not listening", len(frames))
				}
				return
			}
			var n [2]int
			for len(frames) > 0 {
				f := <-frames
				n[f.Leg]++
				want := make([]int16, FrameSamples)
				[]Codec{PCMU, PCMA}[f.Leg].Decode(want, payloads[f.Leg])
				if fmt.Sprint(f.PCM) != fmt.Sprint(want) {
					t.Errorf("leg %d frame: %v…, want %v…", f.Leg, f.PCM[:4], want[:4])
				}
			}
			if n != [2]int{3, 2} {
				t.Errorf("frames by leg %v, want [3 2]", n)
			}
			// Stopped, the legs' audio goes to their sinks as before.
			br.Stop()
			g.sendAudio(1, 1, 8, payloads[1])
			select {
			case f := <-frames:
				if f.Leg != 1 {
					t.Errorf("frame of leg %d after Stop", f.Leg)
				}
			case <-time.After(2 * time.Second):
				t.Error("no frame after Stop")
			}
		})
	}
}

// TestSendPathDoesNotAllocate pins the send side of the media path: a
// slot of queued audio, of a Play, of silence, marks delivered, allocate
// nothing. Blocks of queued audio come from a sync.Pool and go back to it
// once sent; the pool's own bookkeeping may allocate as it grows, at most
// once a block.
func TestSendPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops blocks on purpose under -race")
	}
	peer := newRawPeer(t)
	s := listen(t)
	s.setParams(params(PCMU, peer.addr()))
	tx := newSender()
	now := time.Now()
	s.po.next = now
	s.Marks()
	slot := func() {
		now = now.Add(frameDuration)
		s.po.mu.Lock()
		s.po.next = now
		s.po.mu.Unlock()
		s.tick(tx, now)
	}
	pcm := tone(SampleRate, 440, 5000)
	const runs = 200
	for _, tc := range []struct {
		name string
		fill func()
		most uint64
	}{
		{"queued audio", func() {
			for range 5 {
				s.Enqueue(pcm)
			}
		}, runs * FrameSamples / blockSamples},
		{"silence", func() {}, 0},
		{"a Play", func() {
			s.po.mu.Lock()
			s.po.push(item{kind: playAudio, pcm: tone(5*SampleRate, 440, 5000), done: make(chan error, 1)})
			s.po.mu.Unlock()
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Clear()
			tc.fill()
			slot()
			if allocs := mallocs(runs, slot); allocs > tc.most {
				t.Errorf("%d allocations in %d slots, want at most %d", allocs, runs, tc.most)
			}
		})
	}
	// Enqueueing 20 ms at a time, marked, as a streaming agent does: one
	// block, taken and given back each time.
	s.Clear()
	frame := pcm[:FrameSamples]
	if allocs := mallocs(runs, func() {
		s.Enqueue(frame)
		s.Mark("m")
		slot()
		<-s.Marks()
	}); allocs > 1 {
		t.Errorf("%d allocations for %d frames enqueued, marked and sent", allocs, runs)
	}
	if st := s.Stats(); st.PacketsSent < 4*runs {
		t.Errorf("stats %+v", st)
	}
}

// TestPacerManySessions starts and closes many Sessions at once, some of
// them playing: every one streams, and once all are closed no pacer
// goroutine is left (goleak, in TestMain).
func TestPacerManySessions(t *testing.T) {
	peer := newRawPeer(t)
	const n = 50
	var wg sync.WaitGroup
	sessions := make([]*Session, n)
	for i := range sessions {
		s, err := ListenRTP(loopback, PortRange{})
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = s
		wg.Go(func() {
			if err := s.Start(params(PCMU, peer.addr())); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				s.Play(context.Background(), tone(5*FrameSamples, 300, 4000))
			}
		})
	}
	wg.Wait()
	for _, s := range sessions {
		waitStats(t, s, func(st Stats) bool { return st.PacketsSent >= 10 })
	}
	for i, s := range sessions {
		wg.Go(func() {
			if i%3 == 0 {
				s.Enqueue(tone(SampleRate, 300, 4000))
			}
			s.Close()
		})
	}
	wg.Wait()
	for _, sh := range sharedPacer.shards {
		sh.mu.Lock()
		if sh.n != 0 || sh.stop != nil {
			t.Errorf("a shard holds %d Sessions, running %v", sh.n, sh.stop != nil)
		}
		sh.mu.Unlock()
	}
}
