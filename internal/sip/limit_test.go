package sip

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestSourceLimiter(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	l := newSourceLimiter(2, 3) // 2 a second, 3 at once
	for i := range 3 {
		if !l.allow(a, t0) {
			t.Fatalf("answer %d of the burst held back", i+1)
		}
	}
	if l.allow(a, t0) {
		t.Fatal("a fourth answer at once let through")
	}
	if !l.allow(b, t0) {
		t.Fatal("another source held back by the first one's budget")
	}
	if !l.allow(a, t0.Add(500*time.Millisecond)) || l.allow(a, t0.Add(500*time.Millisecond)) {
		t.Fatal("half a second should bring exactly one token back")
	}
	if !l.allow(a, t0.Add(time.Hour)) {
		t.Fatal("a source quiet for long held back")
	}
}

// TestSourceLimiterIsFixedMemory: the budgets of any number of sources
// fit in its table, and a source within its rate stays served while a
// hundred thousand others use theirs up around it.
func TestSourceLimiterIsFixedMemory(t *testing.T) {
	l := newSourceLimiter(1, 2)
	victim := netip.MustParseAddr("198.51.100.7")
	held, asked := 0, 0
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * 10 * time.Millisecond) // 100 new sources a second
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		for range 3 {
			l.allow(ip, now)
		}
		if i%100 == 0 { // the victim: one a second, its rate
			asked++
			if !l.allow(victim, now) {
				held++
			}
		}
	}
	if held > 0 {
		t.Fatalf("a source within its rate was held back %d times of %d", held, asked)
	}
}

func TestLogLimiter(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	l := newLogLimiter(10*time.Second, 1, 2)
	type step struct {
		at       time.Duration
		ip       netip.Addr
		ok       bool
		held     int
		scenario string
	}
	for _, s := range []step{
		{0, a, true, 0, "first line from a"},
		{time.Second, a, false, 0, "a again within its interval"},
		{2 * time.Second, a, false, 0, "and again"},
		{2 * time.Second, b, true, 0, "b, its own slot"},
		{10 * time.Second, a, true, 2, "a after its interval: two held back"},
		{10 * time.Second, netip.MustParseAddr("192.0.2.3"), true, 0, "a third source, from the burst"},
		{10 * time.Second, netip.MustParseAddr("192.0.2.4"), false, 0, "a fourth at the same instant: over the overall rate"},
		{12 * time.Second, netip.MustParseAddr("192.0.2.5"), true, 1, "later: the one held back overall is counted"},
	} {
		ok, held := l.allow(s.ip, t0.Add(s.at))
		if ok != s.ok || held != s.held {
			t.Fatalf("%s: allow = %v, %d; want %v, %d", s.scenario, ok, held, s.ok, s.held)
		}
	}
}

func TestEscapeBytes(t *testing.T) {
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"INVITE sip:a@b SIP/2.0\r\n", 100, `INVITE sip:a@b SIP/2.0\r\n`},
		{"\x00\x7f\xff\tq\"\\", 100, `\x00\x7f\xff\tq"\\`},
		{"héllo", 100, `h\xc3\xa9llo`},
		{"abcdef", 3, "abc... (3 more bytes)"},
		{"", 10, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			if got := escapeBytes(tt.in, tt.limit); got != tt.want {
				t.Fatalf("escapeBytes = %q, want %q", got, tt.want)
			}
			if got := escapeBytes([]byte(tt.in), tt.limit); got != tt.want {
				t.Fatalf("escapeBytes([]byte) = %q, want %q", got, tt.want)
			}
		})
	}
}
