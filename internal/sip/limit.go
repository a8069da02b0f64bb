package sip

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// bucket is a token bucket: it holds up to burst tokens and gains rate of
// them a second. The zero bucket is full.
type bucket struct {
	tokens float64
	last   int64 // Unix nanoseconds of the last refill; 0 for a full bucket never used
}

// refill brings b's tokens up to now and returns them.
func (b *bucket) refill(now int64, rate, burst float64) float64 {
	switch {
	case b.last == 0:
		b.tokens = burst
	case now > b.last:
		b.tokens = min(burst, b.tokens+float64(now-b.last)*rate/float64(time.Second))
	default:
		return b.tokens // a clock that went back gives nothing
	}
	b.last = now
	return b.tokens
}

// take spends one token if there is one.
func (b *bucket) take(now int64, rate, burst float64) bool {
	if b.refill(now, rate, burst) < 1 {
		return false
	}
	b.tokens--
	return true
}

// sketchRows and sketchWidth size a sourceLimiter: 2 x 4096 buckets of 16
// bytes, 128 KiB whatever the number of sources.
const (
	sketchRows  = 2
	sketchWidth = 4096
)

// sourceLimiter is a token bucket per source address kept in fixed memory:
// a count-min sketch whose cells are token buckets. A source hashes to one
// cell per row (the rows use independent halves of a seeded hash, so a
// sender cannot choose whom it collides with) and is held back only when
// every one of its cells is empty, so a source that shares a cell with a
// busy one is still served from its other cell. Sources that collide in
// every row share a budget: the limit errs toward holding back, never
// toward letting more through.
type sourceLimiter struct {
	rate, burst float64

	mu   sync.Mutex
	seed maphash.Seed
	rows [sketchRows][sketchWidth]bucket
}

func newSourceLimiter(rate, burst float64) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: burst, seed: maphash.MakeSeed()}
}

// allow reports whether ip may be sent one more answer at now, and if so
// spends it.
func (l *sourceLimiter) allow(ip netip.Addr, now time.Time) bool {
	h := maphash.Comparable(l.seed, ip)
	idx := [sketchRows]uint64{h % sketchWidth, (h >> 32) % sketchWidth}
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	most := 0.0
	for r := range sketchRows {
		most = max(most, l.rows[r][idx[r]].refill(t, l.rate, l.burst))
	}
	if most < 1 {
		return false
	}
	for r := range sketchRows {
		if b := &l.rows[r][idx[r]]; b.tokens >= 1 {
			b.tokens--
		}
	}
	return true
}

// logSlots is how many sources a logLimiter tells apart.
const logSlots = 256

// logLimiter thins out log lines that any sender can cause: at most one
// per source per interval, and at most rate a second (burst at once) from
// all sources together. It counts the lines it holds back, so the next line
// let through can say how many there were. Its memory is fixed: sources
// that hash to the same slot take it from each other, which lets more lines
// through per source, never more than the overall rate.
type logLimiter struct {
	interval    time.Duration
	rate, burst float64

	mu      sync.Mutex
	seed    maphash.Seed
	slots   [logSlots]logSlot
	overall bucket
	held    int // lines held back by the overall rate since the last one let through
}

type logSlot struct {
	source netip.Addr
	next   time.Time
	held   int
}

func newLogLimiter(interval time.Duration, rate, burst float64) *logLimiter {
	return &logLimiter{interval: interval, rate: rate, burst: burst, seed: maphash.MakeSeed()}
}

// allow reports whether a line about source may be logged at now, and how
// many lines were held back since the last one that was (from this source,
// and from all sources by the overall rate).
func (l *logLimiter) allow(source netip.Addr, now time.Time) (ok bool, held int) {
	s := &l.slots[maphash.Comparable(l.seed, source)%logSlots]
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.source == source && now.Before(s.next) {
		s.held++
		return false, 0
	}
	if !l.overall.take(now.UnixNano(), l.rate, l.burst) {
		l.held++
		return false, 0
	}
	if s.source == source {
		held = s.held
	}
	held += l.held
	l.held = 0
	*s = logSlot{source: source, next: now.Add(l.interval)}
	return true, held
}
