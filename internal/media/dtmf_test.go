package media

import (
	"testing"
	"time"
)

func TestDTMFEventWire(t *testing.T) {
	e := DTMFEvent{Event: 5, End: true, Volume: 10, Duration: 800}
	var b [4]byte
	if n := e.MarshalTo(b[:]); n != DTMFEventSize {
		t.Fatalf("MarshalTo returned %d", n)
	}
	if want := [4]byte{0x05, 0x8A, 0x03, 0x20}; b != want {
		t.Errorf("payload % x, want % x", b, want)
	}
	got, err := ParseDTMFEvent(b[:])
	if err != nil || got != e {
		t.Errorf("ParseDTMFEvent = %+v, %v; want %+v", got, err, e)
	}
	// The reserved bit is ignored on receipt (RFC 4733 §2.3.3).
	if got, _ := ParseDTMFEvent([]byte{11, 0x40 | 7, 0, 160}); got != (DTMFEvent{Event: 11, Volume: 7, Duration: 160}) {
		t.Errorf("with the R bit set: %+v", got)
	}
	if _, err := ParseDTMFEvent(b[:3]); err == nil {
		t.Error("a 3-byte payload parsed")
	}
}

func TestDigitEvent(t *testing.T) {
	for code, digit := range "0123456789*#ABCD" {
		if got, ok := DigitEvent(digit); !ok || int(got) != code {
			t.Errorf("DigitEvent(%q) = %d, %v; want %d", digit, got, ok, code)
		}
		if got, ok := (DTMFEvent{Event: uint8(code)}).Digit(); !ok || got != digit {
			t.Errorf("event %d is %q, %v; want %q", code, got, ok, digit)
		}
	}
	if got, ok := DigitEvent('b'); !ok || got != 13 {
		t.Errorf("DigitEvent('b') = %d, %v", got, ok)
	}
	for _, r := range "EeX !\x00" {
		if _, ok := DigitEvent(r); ok {
			t.Errorf("DigitEvent(%q) succeeded", r)
		}
	}
	if _, ok := (DTMFEvent{Event: 16}).Digit(); ok {
		t.Error("flash (16) is a digit")
	}
}

func TestDTMFEvents(t *testing.T) {
	tests := []struct {
		name      string
		d         time.Duration
		durations []uint16 // of the updates, then the final one
	}{
		{"100 ms", 100 * time.Millisecond, []uint16{160, 320, 480, 640, 800}},
		{"rounded up to 20 ms", 90 * time.Millisecond, []uint16{160, 320, 480, 640, 800}},
		{"at least 40 ms", 10 * time.Millisecond, []uint16{160, 320}},
		{"at most 8 s", time.Minute, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := DTMFEvents('#', tt.d)
			if err != nil {
				t.Fatal(err)
			}
			if tt.durations == nil {
				if last := events[len(events)-1].Duration; last != 64000 {
					t.Errorf("final duration %d, want 64000", last)
				}
				return
			}
			updates := len(tt.durations) - 1
			if len(events) != updates+3 {
				t.Fatalf("%d events, want %d updates and 3 ends", len(events), updates)
			}
			for i, e := range events {
				want := DTMFEvent{Event: 11, Volume: 10}
				if i < updates {
					want.Duration = tt.durations[i]
				} else {
					want.Duration, want.End = tt.durations[updates], true
				}
				if e != want {
					t.Errorf("event %d: %+v, want %+v", i, e, want)
				}
			}
		})
	}
	if _, err := DTMFEvents('x', time.Second); err == nil {
		t.Error("DTMFEvents('x') succeeded")
	}
}

// eventPacket is a telephone-event packet as a detector sees it.
type eventPacket struct {
	event    uint8
	end      bool
	duration uint16
	ts       uint32
	marker   bool
}

func TestDTMFDetector(t *testing.T) {
	press := func(event uint8, ts uint32) []eventPacket {
		return []eventPacket{
			{event, false, 160, ts, true},
			{event, false, 320, ts, false},
			{event, false, 480, ts, false},
			{event, true, 640, ts, false},
			{event, true, 640, ts, false},
			{event, true, 640, ts, false},
		}
	}
	concat := func(ps ...[]eventPacket) []eventPacket {
		var all []eventPacket
		for _, p := range ps {
			all = append(all, p...)
		}
		return all
	}
	tests := []struct {
		name    string
		packets []eventPacket
		want    string
	}{
		{"one press", press(5, 1000), "5"},
		{"two presses of the same digit", concat(press(7, 1000), press(7, 3000)), "77"},
		{"every digit", concat(press(1, 0), press(11, 2000), press(10, 4000), press(15, 6000)), "1#*D"},
		{"first packet lost", press(3, 1000)[1:], "3"},
		{"only an end packet arrives", press(3, 1000)[4:], "3"},
		{"end packets retransmitted", concat(press(9, 1000), press(9, 1000)[3:], press(9, 1000)[3:]), "9"},
		{"late end packet of the previous press", concat(press(1, 1000), press(2, 3000)[:2], press(1, 1000)[5:], press(2, 3000)[2:]), "12"},
		{"timestamp wraps", concat(press(4, 0xFFFFFF00), press(6, 100)), "46"},
		{"long press in segments", []eventPacket{
			{8, false, 160, 1000, true},
			{8, false, 0xFFFF, 1000, false},
			{8, false, 160, 1000 + 0xFFFF, false},
			{8, true, 800, 1000 + 0xFFFF, false},
		}, "8"},
		{"flash is not a digit", press(16, 1000), ""},
		{"flash then a digit", concat(press(16, 1000), press(0, 2000)), "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d DTMFDetector
			var got []rune
			for _, p := range tt.packets {
				var b [4]byte
				DTMFEvent{Event: p.event, End: p.end, Volume: 10, Duration: p.duration}.MarshalTo(b[:])
				if r, ok := d.Feed(b[:], p.ts, p.marker); ok {
					got = append(got, r)
				}
			}
			if string(got) != tt.want {
				t.Errorf("digits %q, want %q", string(got), tt.want)
			}
		})
	}
}

func TestDTMFDetectorIgnoresShortPayloads(t *testing.T) {
	var d DTMFDetector
	if _, ok := d.Feed([]byte{5, 0x8A}, 0, true); ok {
		t.Error("a 2-byte payload made a digit")
	}
}

func TestDTMFDetectorReset(t *testing.T) {
	var d DTMFDetector
	p := []byte{5, 0x0A, 0, 160}
	if _, ok := d.Feed(p, 5000, true); !ok {
		t.Fatal("no digit")
	}
	if _, ok := d.Feed(p, 1000, true); ok {
		t.Fatal("an older timestamp made a digit before Reset")
	}
	d.Reset()
	if r, ok := d.Feed(p, 1000, true); !ok || r != '5' {
		t.Errorf("after Reset: %q, %v", r, ok)
	}
}

func TestParseInfoDTMF(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		want        rune // 0: no digit
	}{
		{"dtmf-relay", "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", '5'},
		{"dtmf-relay LF and spaces", "application/dtmf-relay", "Signal = #\nDuration= 250\n", '#'},
		{"dtmf-relay duration first", "application/dtmf-relay", "Duration=160\r\nSignal=*\r\n", '*'},
		{"dtmf-relay lower case key and letter", "Application/DTMF-Relay; charset=utf-8", "signal=b\r\n", 'B'},
		{"dtmf-relay event code for star", "application/dtmf-relay", "Signal=10\r\nDuration=100", '*'},
		{"dtmf-relay event code for D", "application/dtmf-relay", "Signal=15", 'D'},
		{"dtmf-relay flash", "application/dtmf-relay", "Signal=16\r\nDuration=100", 0},
		{"dtmf-relay hook flash word", "application/dtmf-relay", "Signal=!", 0},
		{"dtmf-relay no signal", "application/dtmf-relay", "Duration=160\r\n", 0},
		{"dtmf-relay empty signal", "application/dtmf-relay", "Signal=\r\n", 0},
		{"dtmf-relay two characters", "application/dtmf-relay", "Signal=55", 0},
		{"dtmf", "application/dtmf", "7", '7'},
		{"dtmf with newline", "application/dtmf", "9\r\n", '9'},
		{"dtmf event code", "application/dtmf", "11", '#'},
		{"dtmf empty", "application/dtmf", "", 0},
		{"other type", "text/plain", "Signal=5", 0},
		{"bad content type", "application/", "5", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseInfoDTMF(tt.contentType, []byte(tt.body))
			if ok != (tt.want != 0) || got != tt.want {
				t.Errorf("ParseInfoDTMF = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}
