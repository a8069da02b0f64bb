package media

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The pacer sends every started Session's packets, one every 20 ms, from
// a few goroutines shared by all of them, as a media server does, rather
// than from a goroutine and a timer per Session: a thousand calls woken
// 50 times a second each would cost 50,000 wake-ups a second, where the
// pacer wakes at most once a millisecond per shard.
//
// A shard is a wheel of slotCount one-millisecond slots. A Session joins
// the slot of its first deadline, a whole millisecond, and stays there:
// its deadlines are that one plus multiples of 20 ms for as long as it
// lives. Each time a slot comes round the shard's goroutine ticks the
// Sessions in it, and each sends what its deadlines that have passed call
// for. Sessions are spread over the shards in turn, one shard per
// processor, so sending can use every core.

// slotCount is how many slots a 20 ms cycle has: one a millisecond.
const slotCount = frameMillis

// pacer is the shards; there is one, sharedPacer.
type pacer struct {
	shards []*pacerShard
	next   atomic.Uint32 // the shard the next Session joins, in turn
}

// sharedPacer paces every Session of the process.
var sharedPacer = newPacer(runtime.GOMAXPROCS(0))

// paceEpoch is the origin of the pacer's milliseconds. Deadlines are
// offsets from it, so they keep its monotonic clock reading and a step of
// the wall clock moves none of them.
var paceEpoch = time.Now()

// paceMillis returns the pacer's millisecond at t.
func paceMillis(t time.Time) int64 { return t.Sub(paceEpoch).Milliseconds() }

// paceTime returns the start of the pacer's millisecond ms.
func paceTime(ms int64) time.Time { return paceEpoch.Add(time.Duration(ms) * time.Millisecond) }

func newPacer(shards int) *pacer {
	p := &pacer{shards: make([]*pacerShard, max(shards, 1))}
	for i := range p.shards {
		p.shards[i] = &pacerShard{tx: newSender(), wake: make(chan struct{}, 1)}
	}
	return p
}

// pacerShard is one goroutine's share of the Sessions. Its goroutine runs
// only while the shard has Sessions: the last to leave stops it and waits
// for it, so a process (or a test) with no Session has no pacer running.
type pacerShard struct {
	// mu guards the wheel, and is held while the Sessions of a slot are
	// ticked: once leave returns, the goroutine is done with the Session.
	mu    sync.Mutex
	slots [slotCount][]*Session
	n     int
	tx    *sender // the goroutine's buffers

	stop chan struct{} // closed to stop the goroutine; nil when none runs
	done chan struct{} // closed by the goroutine as it returns
	wake chan struct{} // a Session joined: look at the wheel again
}

// paceSlot is where a Session sits on its shard's wheel.
type paceSlot struct {
	shard *pacerShard
	slot  int // index into shard.slots
	index int // index into shard.slots[slot]
}

// join puts s on a shard's wheel, its first deadline the first whole
// millisecond at least 20 ms from now. The first packet thus goes one
// frame after Start: a Session started and at once bridged sends nothing
// of its own.
func (p *pacer) join(s *Session) {
	sh := p.shards[int(p.next.Add(1))%len(p.shards)]
	first := paceMillis(time.Now().Add(frameDuration)) + 1
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.po.next = paceTime(first)
	slot := int(first % slotCount)
	s.pace = paceSlot{shard: sh, slot: slot, index: len(sh.slots[slot])}
	sh.slots[slot] = append(sh.slots[slot], s)
	sh.n++
	if sh.stop == nil {
		sh.stop, sh.done = make(chan struct{}), make(chan struct{})
		go sh.run(sh.stop, sh.done)
		return
	}
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// leave takes s off its wheel, if it is on one. Once it returns, no
// goroutine of the pacer touches s again.
func (p *pacer) leave(s *Session) {
	sh := s.pace.shard
	if sh == nil {
		return
	}
	sh.mu.Lock()
	list := sh.slots[s.pace.slot]
	last := len(list) - 1
	moved := list[last]
	list[s.pace.index] = moved
	moved.pace.index = s.pace.index
	list[last] = nil
	sh.slots[s.pace.slot] = list[:last]
	s.pace = paceSlot{}
	sh.n--
	var done chan struct{}
	if sh.n == 0 {
		close(sh.stop)
		done = sh.done
		sh.stop, sh.done = nil, nil
	}
	sh.mu.Unlock()
	if done != nil {
		<-done
	}
}

// run is the shard's goroutine: it serves each slot as its millisecond
// comes, and sleeps until the next slot that holds a Session.
func (sh *pacerShard) run(stop, done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	cursor := paceMillis(time.Now()) // the next millisecond to serve
	for {
		sh.mu.Lock()
		now := time.Now()
		nowMs := paceMillis(now)
		// Far behind (the process stalled), serve each slot once: every
		// Session sends what its deadlines call for, whatever the slot.
		if nowMs-cursor >= slotCount {
			cursor = nowMs - slotCount + 1
		}
		for ; cursor <= nowMs; cursor++ {
			for _, s := range sh.slots[cursor%slotCount] {
				s.tick(sh.tx, now)
			}
		}
		wait := int64(-1)
		for i := range int64(slotCount) {
			if len(sh.slots[(cursor+i)%slotCount]) > 0 {
				wait = i
				break
			}
		}
		sh.mu.Unlock()
		if wait < 0 {
			// Empty: the last Session is leaving and closes stop.
			select {
			case <-stop:
				return
			case <-sh.wake:
				continue
			}
		}
		timer.Reset(time.Until(paceTime(cursor + wait)))
		select {
		case <-timer.C:
		case <-sh.wake:
			timer.Stop()
		case <-stop:
			return
		}
	}
}
