package media

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrPlayoutFull is what Enqueue returns when some of the audio given did
// not fit in the playout queue and was dropped.
var ErrPlayoutFull = errors.New("rtp: playout queue full")

// ErrTooManyMarks is what Mark returns when 256 marks are already pending
// or delivered and not yet read.
var ErrTooManyMarks = errors.New("rtp: too many marks pending")

// ErrCleared is what a Play returns when Clear dropped its audio.
var ErrCleared = errors.New("rtp: playout cleared")

const (
	// DefaultPlayoutLimit is how much audio Enqueue queues ahead of real
	// time when Session.PlayoutLimit is zero.
	DefaultPlayoutLimit = 30 * time.Second
	// maxMarks bounds the marks pending in the queue and delivered on
	// Marks but not yet read, together: a mark an utterance is plenty.
	maxMarks = 256
	// blockSamples is the size of the blocks Enqueue copies audio into,
	// taken as the queue grows and given back as it drains: memory grows
	// with the audio queued, and an idle Session holds none. A multiple
	// of a frame, so that frames never straddle two blocks.
	blockSamples = 25 * FrameSamples // 0.5 s, 8 KB
)

// audioBlock holds samples Enqueue copied.
type audioBlock [blockSamples]int16

// blockPool keeps the blocks drained queues gave back, for any Session.
var blockPool = sync.Pool{New: func() any { return new(audioBlock) }}

// playout is a Session's outgoing side: what is queued to be sent, in
// order, and the schedule of the stream's 20 ms slots. The pacer ticks it
// once a slot; Enqueue, Mark, Clear, Play and SendDigit fill it.
type playout struct {
	mu sync.Mutex
	// items is a ring of what is queued, the oldest at head.
	items   []item
	head, n int
	// queued counts the samples of audio not yet sent, Enqueue's and
	// Plays'.
	queued int
	// marks counts the marks among items.
	marks int
	// appended is when Enqueue last added audio.
	appended time.Time
	// markCh delivers marks; made on first use, as most Sessions never
	// see a mark.
	markCh chan string
	closed bool
	// bridged is set while a Bridge holds the stream: the Session is off
	// the pacer's wheel, and its queue waits.
	bridged bool
	// next is the deadline of the stream's next slot.
	next time.Time
	// talking is set while the stream sends live audio: Enqueued audio
	// sent within two frames of coming (not audio queued ahead); the
	// last slot filled sent some, or was left open after some.
	talking bool
	// open counts the slots just before next that were left open: they
	// came with nothing queued while audio was being Enqueued in real
	// time, nothing was sent in them, and the audio that comes next fills
	// them, in order, at once (see sendAhead and slot).
	open int
}

// openSlots is how many slots in a row may be left open when a live
// stream's audio stops coming: how late (60 ms, what a caller's jitter
// buffer commonly absorbs) its next frame may come and still take its
// place in the stream, sent at once, rather than go a slot later behind
// silence and delay every frame after it by as much.
const openSlots = 3

// liveWithin is how soon after it came Enqueued audio is sent when it
// comes in real time, as a live stream's does.
const liveWithin = 2 * frameDuration

// itemKind says what an item of the playout queue is.
type itemKind uint8

const (
	// queuedAudio is audio Enqueue copied into a block.
	queuedAudio itemKind = iota + 1
	// playAudio is a Play's audio, read in place.
	playAudio
	// markItem is a mark, named.
	markItem
	// digitItem is a SendDigit's telephone-event.
	digitItem
)

// item is one entry of the playout queue.
type item struct {
	kind itemKind
	// pcm is the audio, and off how much of it has been sent. For
	// queuedAudio it is the filled part of block.
	pcm   []int16
	off   int
	block *audioBlock
	// name is a mark's.
	name string
	// done hears how a Play or SendDigit ended.
	done chan error
	// A digit's event code, its length in frames, the packets of it sent
	// and its timestamp (RFC 4733 §2.5.1: all its packets carry the
	// event's start).
	event        uint8
	frames, sent int
	ts           uint32
}

// push adds it at the end of the queue.
func (po *playout) push(it item) {
	if po.n == len(po.items) {
		grown := make([]item, max(8, 2*len(po.items)))
		for i := range po.n {
			grown[i] = po.items[(po.head+i)%len(po.items)]
		}
		po.items, po.head = grown, 0
	}
	po.items[(po.head+po.n)%len(po.items)] = it
	po.n++
}

// at returns the i-th item from the head.
func (po *playout) at(i int) *item { return &po.items[(po.head+i)%len(po.items)] }

// front and back return the first and last items; the queue must not be
// empty.
func (po *playout) front() *item { return po.at(0) }
func (po *playout) back() *item  { return po.at(po.n - 1) }

// pop drops the first item.
func (po *playout) pop() {
	*po.front() = item{}
	po.head = (po.head + 1) % len(po.items)
	po.n--
	po.shrink()
}

// remove drops the i-th item, keeping the order of the others.
func (po *playout) remove(i int) {
	for ; i < po.n-1; i++ {
		*po.at(i) = *po.at(i + 1)
	}
	*po.at(po.n - 1) = item{}
	po.n--
	po.shrink()
}

// shrink lets a ring that grew large go, once it is empty.
func (po *playout) shrink() {
	if po.n == 0 {
		po.head = 0
		if len(po.items) > 64 {
			po.items = nil
		}
	}
}

// marksChan returns markCh, making it on first use.
func (po *playout) marksChan() chan string {
	if po.markCh == nil {
		po.markCh = make(chan string, maxMarks)
		if po.closed {
			close(po.markCh)
		}
	}
	return po.markCh
}

// playoutLimit returns the most audio Enqueue queues, in samples.
func (s *Session) playoutLimit() int {
	d := s.PlayoutLimit
	if d <= 0 {
		d = DefaultPlayoutLimit
	}
	return int(d.Milliseconds() * SampleRate / 1000)
}

// Enqueue copies pcm, 8 kHz mono linear PCM, to the end of the playout
// queue and returns at once; the stream sends it 20 ms a packet, after
// what was queued before. Audio may be queued ahead of real time up to
// PlayoutLimit (30 s by default); what does not fit is dropped, counted in
// Stats.PlayoutOverflow, and the error is ErrPlayoutFull.
//
// Audio may come in pieces of any size: they are sent as one stream, cut
// into 20 ms frames. A last frame shorter than 20 ms waits for more audio
// for up to a frame's time, and is then sent padded with silence; a Mark,
// Play or SendDigit after it pads it at once. Enqueue may be called before Start:
// the audio waits for it.
func (s *Session) Enqueue(pcm []int16) error {
	po := &s.po
	po.mu.Lock()
	defer po.mu.Unlock()
	if po.closed {
		return ErrClosed
	}
	take := min(len(pcm), max(s.playoutLimit()-po.queued, 0))
	for rest := pcm[:take]; len(rest) > 0; {
		var it *item
		if po.n > 0 {
			if b := po.back(); b.kind == queuedAudio && len(b.pcm) < blockSamples {
				it = b
			}
		}
		if it == nil {
			block := blockPool.Get().(*audioBlock)
			po.push(item{kind: queuedAudio, block: block, pcm: block[:0]})
			it = po.back()
		}
		n := min(len(rest), blockSamples-len(it.pcm))
		it.pcm = append(it.pcm, rest[:n]...)
		rest = rest[n:]
		po.queued += n
	}
	if take > 0 {
		po.appended = time.Now()
		s.sendAhead(nil, po.appended)
	}
	if dropped := len(pcm) - take; dropped > 0 {
		s.stats.overflow.Add(uint64((dropped + FrameSamples - 1) / FrameSamples))
		return ErrPlayoutFull
	}
	return nil
}

// senderPool holds the buffers of sends made outside the pacer.
var senderPool = sync.Pool{New: func() any { return newSender() }}

// sendAhead sends the audio at the head of the queue at once, without
// waiting for the pacer, into the slots left open after audio (late
// frames of a stream, each in its place) and then into the next slot if
// it is due or less than a frame away. A streaming agent's audio, which
// comes a frame at a time in real time, thus goes out as it comes rather
// than up to 20 ms later in its slot (or later still, when the pacer's
// goroutine waits to be scheduled), and a frame that comes a little late,
// or a few that come at once after a stall, neither leave a gap of
// silence nor delay the frames after them. Each packet takes its slot's
// place in the stream, timestamp and all, so the stream is never more than
// one frame ahead of its clock, and audio queued ahead of real time still
// goes one frame a slot. Only whole frames of Enqueued audio go this way.
// Enqueue calls it, and so does the pacer after each slot, for a frame
// that came while the stream was already a frame ahead. po.mu is held; tx
// is the caller's buffers, or nil.
func (s *Session) sendAhead(tx *sender, now time.Time) {
	po := &s.po
	if po.bridged || po.closed || !s.started.Load() || !Direction(s.dir.Load()).Sends() || !reachable(s.remote.Load()) {
		return
	}
	for po.n > 0 {
		it := po.front()
		if it.kind != queuedAudio || len(it.pcm)-it.off < FrameSamples {
			return
		}
		var deadline time.Time
		switch d := po.next.Sub(now); {
		case po.open > 0:
			deadline = po.next.Add(-time.Duration(po.open) * frameDuration)
		case d > -resyncLag && d <= frameDuration:
			// Less than a frame away, or due: the pacer is late, and would
			// send it as soon as it runs (beyond resyncLag it skips ahead
			// instead).
			deadline = po.next
			if d < -frameDuration {
				s.stats.sendLate.Add(1)
			}
		default:
			return
		}
		ts := s.out.tsAt(deadline)
		if s.out.sentAny && int32(ts-s.out.end) < 0 {
			return // a Bridge's last packet still plays in this slot
		}
		if tx == nil {
			tx = senderPool.Get().(*sender)
			defer senderPool.Put(tx)
		}
		if !s.writeAudio(tx, it.pcm[it.off:it.off+FrameSamples], ts) {
			return
		}
		s.out.sentAny, s.out.end = true, ts+FrameSamples
		po.talking = now.Sub(po.appended) <= liveWithin
		if po.open > 0 {
			po.open--
		} else {
			po.next = po.next.Add(frameDuration)
		}
		it.off += FrameSamples
		po.queued -= FrameSamples
		if it.off == len(it.pcm) {
			blockPool.Put(it.block)
			po.pop()
		}
		po.deliverMarks(s)
	}
}

// Mark queues a mark named name after the audio queued so far: name is
// delivered on Marks once all of that audio has been sent, or would have
// been (while the peer holds the call the queue runs on in real time,
// sending nothing), or dropped by Clear. A mark with nothing before it is
// delivered at the next 20 ms slot. Marks pending and delivered but not
// yet read are at most 256 together: past that Mark returns
// ErrTooManyMarks.
func (s *Session) Mark(name string) error {
	po := &s.po
	po.mu.Lock()
	defer po.mu.Unlock()
	if po.closed {
		return ErrClosed
	}
	if po.marks+len(po.marksChan()) >= maxMarks {
		return ErrTooManyMarks
	}
	po.push(item{kind: markItem, name: name})
	po.marks++
	if po.bridged {
		// No slot comes while bridged; a mark with nothing before it
		// need not wait for one.
		po.deliverMarks(s)
	}
	return nil
}

// Marks delivers the names given to Mark, in order, each once its audio
// has gone. Close closes it; marks still pending then are not delivered.
func (s *Session) Marks() <-chan string {
	po := &s.po
	po.mu.Lock()
	defer po.mu.Unlock()
	return po.marksChan()
}

// Clear drops all the audio queued, Enqueue's and Plays' (which return
// ErrCleared), at once: the next packet sent is silence. The marks pending
// are delivered on Marks, in order. A SendDigit queued or under way is
// not dropped: it is no audio.
func (s *Session) Clear() {
	s.po.mu.Lock()
	defer s.po.mu.Unlock()
	s.clearLocked()
}

func (s *Session) clearLocked() {
	po := &s.po
	// What comes after a Clear is new audio: it takes no open slot.
	if po.open > 0 {
		po.open = 0
		s.out.silent = true
	}
	po.talking = false
	kept := 0
	for i := range po.n {
		it := po.at(i)
		switch it.kind {
		case queuedAudio:
			blockPool.Put(it.block)
		case playAudio:
			it.done <- ErrCleared
		case markItem:
			po.deliverMark(s, it.name)
		case digitItem:
			*po.at(kept) = *it
			kept++
		}
	}
	for i := kept; i < po.n; i++ {
		*po.at(i) = item{}
	}
	po.n, po.queued, po.marks = kept, 0, 0
	po.shrink()
}

// WaitSent waits until the audio queued so far has been sent (Queued is
// zero), and returns true; false when gone is closed (the call's leg
// ended) or ctx ends first.
func (s *Session) WaitSent(ctx context.Context, gone <-chan struct{}) bool {
	t := time.NewTicker(frameDuration)
	defer t.Stop()
	for s.Queued() > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-gone:
			return false
		case <-t.C:
		}
	}
	return true
}

// Queued returns how much audio is queued and not yet sent, Enqueue's and
// Plays'. Zero means all audio given so far has gone.
func (s *Session) Queued() time.Duration {
	po := &s.po
	po.mu.Lock()
	defer po.mu.Unlock()
	return time.Duration(po.queued) * time.Second / SampleRate
}

// deliverMark puts name on Marks. Mark's bound leaves room for it.
func (po *playout) deliverMark(s *Session, name string) {
	select {
	case po.marksChan() <- name:
	default:
		s.stats.dropped.Add(1)
	}
}

// deliverMarks delivers the marks at the head of the queue: all the
// audio before them has gone.
func (po *playout) deliverMarks(s *Session) {
	for po.n > 0 && po.front().kind == markItem {
		po.deliverMark(s, po.front().name)
		po.marks--
		po.pop()
	}
}

// Play sends pcm, 8 kHz mono linear PCM, as 20 ms packets (the last one
// padded with silence) after the audio queued before it, and returns once
// the last has gone, or when ctx ends (what was not sent then is dropped),
// or with ErrCleared when Clear dropped it. Plays and SendDigits take
// turns: one waits for those before it to finish, as it waits while the
// Session is in a Bridge. While the direction does not send (the peer
// holds the call), Play takes as long but sends nothing. pcm is read in
// place while Play runs, and not after.
func (s *Session) Play(ctx context.Context, pcm []int16) error {
	if len(pcm) == 0 {
		return nil
	}
	return s.submit(ctx, item{kind: playAudio, pcm: pcm})
}

// SendDigit sends digit as RFC 4733 telephone-events lasting d (see
// DTMFEvents), in the stream's next slots after the audio queued before
// it (no audio is sent in those slots), and returns once the last end
// packet has gone, or when ctx ends. It takes turns with Plays, as Play
// does. It is an error if telephone-events were not negotiated.
func (s *Session) SendDigit(ctx context.Context, digit rune, d time.Duration) error {
	code, ok := DigitEvent(digit)
	if !ok {
		return fmt.Errorf("rtp: %q is not a DTMF digit", digit)
	}
	if p := s.params.Load(); p == nil || !p.DTMF {
		return errors.New("rtp: telephone-event was not negotiated")
	}
	return s.submit(ctx, item{kind: digitItem, event: code, frames: dtmfFrames(d)})
}

// submit queues a Play's or SendDigit's item in its turn and waits for it
// to be sent. Whatever ends the wait, the item is out of the queue when
// submit returns, so a Play's pcm is not read after.
func (s *Session) submit(ctx context.Context, it item) error {
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
	done := make(chan error, 1)
	it.done = done
	po := &s.po
	po.mu.Lock()
	if po.closed {
		po.mu.Unlock()
		return ErrClosed
	}
	po.push(it)
	po.queued += len(it.pcm)
	po.mu.Unlock()

	var err error
	select {
	case err = <-done:
		return err
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.closing:
		err = ErrClosed
	}
	po.mu.Lock()
	for i := range po.n {
		if it := po.at(i); it.done == done {
			po.queued -= len(it.pcm) - it.off
			po.remove(i)
			break
		}
	}
	po.mu.Unlock()
	return err
}

// tick sends what the stream's slots whose deadlines have passed by now
// call for: one packet each, on time or late. The pacer calls it.
func (s *Session) tick(tx *sender, now time.Time) {
	po := &s.po
	po.mu.Lock()
	defer po.mu.Unlock()
	for !po.next.After(now) {
		deadline := po.next
		if lag := now.Sub(deadline); lag > frameDuration {
			s.stats.sendLate.Add(1)
			if lag > resyncLag {
				// The process stalled: rather than catch up in a burst,
				// skip the slots missed (their audio waits: it is late,
				// not lost), and start a new talkspurt.
				deadline = deadline.Add(lag / frameDuration * frameDuration)
				s.out.silent = true
				po.open, po.talking = 0, false
			}
		}
		po.next = deadline.Add(frameDuration)
		s.slot(tx, deadline)
	}
	s.sendAhead(tx, now)
}

// slot fills the 20 ms slot whose audio plays out at deadline: with the
// next event packet of a digit under way or at the head of the queue,
// with the next frame queued, or with silence, and delivers the marks
// whose audio has gone.
//
// A slot that comes with nothing queued right after live audio (see
// talking: not audio queued ahead that has run out) is left open instead,
// up to openSlots in a row: the next frame, late, fills it at once
// (sendAhead). Once they are given up, nothing will have been sent in
// them, and the next packet starts a talkspurt.
func (s *Session) slot(tx *sender, deadline time.Time) {
	po := &s.po
	po.deliverMarks(s)
	out := &s.out
	ts := out.tsAt(deadline)
	if out.sentAny && int32(ts-out.end) < 0 {
		// The last packet a Bridge relayed still plays in this slot.
		return
	}
	it := po.frontOrNil()
	if it == nil && po.talking && po.open < openSlots {
		po.open++
		return
	}
	if po.open > 0 {
		po.open = 0
		out.silent = true
	}
	po.talking = false
	var sent bool
	switch {
	case it != nil && it.kind == digitItem:
		if it.sent == 0 {
			it.ts = ts
		}
		sent = s.writeEvent(tx, dtmfPacket(it.event, it.frames, it.sent), it.ts, it.sent == 0)
		if it.sent++; it.sent == it.frames+2 {
			it.done <- nil
			po.pop()
		}
	case it != nil:
		frame := po.nextFrame(tx, deadline)
		if frame == nil {
			sent = s.writeSilence(tx, ts)
			break
		}
		sent = s.writeAudio(tx, frame, ts)
		// Only a live stream leaves slots open when it stops: not audio
		// queued ahead, nor a Play, which has all its audio from the
		// start.
		po.talking = sent && it.kind == queuedAudio && deadline.Sub(po.appended) <= liveWithin
		if it.off == len(it.pcm) {
			if it.kind == playAudio {
				it.done <- nil
			} else {
				blockPool.Put(it.block)
			}
			po.pop()
		}
		po.deliverMarks(s)
	default:
		sent = s.writeSilence(tx, ts)
	}
	if sent {
		out.sentAny, out.end = true, ts+FrameSamples
	}
}

// frontOrNil returns the first item, or nil when the queue is empty.
func (po *playout) frontOrNil() *item {
	if po.n == 0 {
		return nil
	}
	return po.front()
}

// nextFrame takes the next 20 ms of the audio at the head of the queue,
// or returns nil when none is ready: a short tail of Enqueued audio, last
// in the queue and added less than a frame's time before deadline, waits
// for the rest. Any other short frame (the end of a Play, or of audio a
// mark follows) is padded with silence in tx.pad.
func (po *playout) nextFrame(tx *sender, deadline time.Time) []int16 {
	it := po.front()
	rest := it.pcm[it.off:]
	if len(rest) >= FrameSamples {
		it.off += FrameSamples
		po.queued -= FrameSamples
		return rest[:FrameSamples]
	}
	if it.kind == queuedAudio && po.n == 1 && deadline.Sub(po.appended) < frameDuration {
		return nil
	}
	n := copy(tx.pad[:], rest)
	clear(tx.pad[n:])
	it.off += n
	po.queued -= n
	return tx.pad[:]
}

// holdForBridge hands the stream to a Bridge: the Session leaves the
// pacer, so that nothing of its own is sent and its queue waits (and an
// idle bridged call costs the pacer nothing), until resumeFromBridge.
func (s *Session) holdForBridge() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	sharedPacer.leave(s)
	s.po.mu.Lock()
	s.po.bridged = true
	s.po.open, s.po.talking = 0, false
	s.po.mu.Unlock()
}

// resumeFromBridge takes the stream back from a Bridge: the Session joins
// the pacer again, and its next packet starts a talkspurt, on the clock
// the relayed packets ran.
func (s *Session) resumeFromBridge() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	s.po.mu.Lock()
	s.po.bridged = false
	s.out.silent = true
	s.po.mu.Unlock()
	if !s.closed {
		sharedPacer.join(s)
	}
}

// closePlayout empties the queue once the pacer has let go of the
// Session: blocks go back to the pool, Plays and SendDigits waiting are
// told ErrClosed, pending marks are dropped, and Marks is closed.
func (s *Session) closePlayout() {
	po := &s.po
	po.mu.Lock()
	defer po.mu.Unlock()
	for i := range po.n {
		it := po.at(i)
		switch it.kind {
		case queuedAudio:
			blockPool.Put(it.block)
		case playAudio, digitItem:
			it.done <- ErrClosed
		}
		*it = item{}
	}
	po.n, po.queued, po.marks = 0, 0, 0
	po.items = nil
	po.closed = true
	if po.markCh != nil {
		close(po.markCh)
	}
}
