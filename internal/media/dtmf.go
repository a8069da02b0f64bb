package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"
)

// DTMFEvent is one RFC 4733 telephone-event payload (§2.3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     event     |E|R| volume    |          duration             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type DTMFEvent struct {
	// Event is the event code: 0-9, 10 for *, 11 for #, 12-15 for A-D,
	// 16 for flash (RFC 4733 §3.2).
	Event uint8
	// End marks the packets that end the event (§2.5.1.4).
	End bool
	// Volume is the power level in -dBm0, 0 to 63 (§2.3.4).
	Volume uint8
	// Duration is how long the event has lasted so far, in RTP timestamp
	// units from the packet's timestamp, the event's start (§2.3.5).
	Duration uint16
}

// DTMFEventSize is the size of a telephone-event payload.
const DTMFEventSize = 4

// dtmfVolume is the power level senders use, -10 dBm0 (RFC 4733 §2.3.4
// leaves it to the sender; this is what most endpoints send).
const dtmfVolume = 10

var errShortDTMF = errors.New("dtmf: telephone-event payload shorter than 4 bytes")

// ParseDTMFEvent decodes a telephone-event payload. A payload carrying
// several events (RFC 4733 §2.5.1.5 packs them back to back) yields the
// first.
func ParseDTMFEvent(b []byte) (DTMFEvent, error) {
	if len(b) < DTMFEventSize {
		return DTMFEvent{}, errShortDTMF
	}
	return DTMFEvent{
		Event:    b[0],
		End:      b[1]&0x80 != 0,
		Volume:   b[1] & 0x3F,
		Duration: binary.BigEndian.Uint16(b[2:4]),
	}, nil
}

// MarshalTo writes the payload into b, which must hold DTMFEventSize
// bytes, and returns DTMFEventSize. The reserved bit is zero (§2.3.3).
func (e DTMFEvent) MarshalTo(b []byte) int {
	_ = b[3]
	b[0] = e.Event
	b[1] = e.Volume & 0x3F
	if e.End {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:4], e.Duration)
	return DTMFEventSize
}

// Digit returns the DTMF digit the event stands for, if it is one.
func (e DTMFEvent) Digit() (rune, bool) { return eventDigit(e.Event) }

// dtmfDigits maps RFC 4733 §3.2 event codes 0-15 to digits.
const dtmfDigits = "0123456789*#ABCD"

func eventDigit(code uint8) (rune, bool) {
	if int(code) < len(dtmfDigits) {
		return rune(dtmfDigits[code]), true
	}
	return 0, false
}

// DigitEvent returns the RFC 4733 event code of a DTMF digit (0-9, *, #,
// A-D, letters in either case).
func DigitEvent(digit rune) (uint8, bool) {
	if digit >= 'a' && digit <= 'd' {
		digit -= 'a' - 'A'
	}
	i := strings.IndexRune(dtmfDigits, digit)
	if i < 0 {
		return 0, false
	}
	return uint8(i), true
}

// DTMF durations DTMFEvents accepts: a tone shorter than 40 ms is not
// reliably detected by receivers that regenerate tones (ITU-T Q.24), and
// an event longer than the 16-bit duration field would need segmenting
// (RFC 4733 §2.5.1.3), which no digit needs.
const (
	minDTMFDuration = 40 * time.Millisecond
	maxDTMFDuration = 8 * time.Second
)

// DTMFEvents returns the telephone-event payloads a sender emits for
// digit lasting d (rounded up to 20 ms, at least 40 ms, at most 8 s), one
// every 20 ms, as RFC 4733 §2.5.1 describes: the first, which goes with
// the RTP marker bit set (§2.5.1.2), then updates with a growing duration,
// then the final duration three times with the E bit (§2.5.1.4). All of
// them go with the same RTP timestamp, the event's start.
func DTMFEvents(digit rune, d time.Duration) ([]DTMFEvent, error) {
	code, ok := DigitEvent(digit)
	if !ok {
		return nil, fmt.Errorf("dtmf: %q is not a DTMF digit", digit)
	}
	frames := dtmfFrames(d)
	events := make([]DTMFEvent, frames+2)
	for i := range events {
		events[i] = dtmfPacket(code, frames, i)
	}
	return events, nil
}

// dtmfFrames is how many 20 ms frames an event lasting d spans.
func dtmfFrames(d time.Duration) int {
	d = min(max(d, minDTMFDuration), maxDTMFDuration)
	return int((d + frameDuration - 1) / frameDuration)
}

// dtmfPacket returns the i-th of the frames+2 payloads of an event of
// frames frames: frames-1 updates, then three ends.
func dtmfPacket(code uint8, frames, i int) DTMFEvent {
	if i < frames-1 {
		return DTMFEvent{Event: code, Volume: dtmfVolume, Duration: uint16((i + 1) * FrameSamples)}
	}
	return DTMFEvent{Event: code, End: true, Volume: dtmfVolume, Duration: uint16(frames * FrameSamples)}
}

// DTMFDetector turns received telephone-event payloads into digits, each
// once. A sender repeats every event in many packets (updates, three end
// packets, maybe retransmissions), all with the event's start as their RTP
// timestamp (RFC 4733 §2.5.1); the detector reports a digit the first time
// it sees a new timestamp, whichever packet that is, so a lost first
// packet delays nothing. The zero DTMFDetector is ready to use; it is not
// safe for concurrent use.
type DTMFDetector struct {
	seen     bool
	ts       uint32 // the RTP timestamp of the latest event
	event    uint8
	ended    bool
	duration uint16
}

// Feed takes the payload of a telephone-event packet with the packet's RTP
// timestamp and marker bit, and returns the digit it starts, if it starts
// one.
func (d *DTMFDetector) Feed(payload []byte, timestamp uint32, marker bool) (rune, bool) {
	e, err := ParseDTMFEvent(payload)
	if err != nil {
		return 0, false
	}
	if d.seen {
		switch diff := int32(timestamp - d.ts); {
		case diff == 0: // the same event again
			d.ended = d.ended || e.End
			d.duration = max(d.duration, e.Duration)
			return 0, false
		case diff < 0: // a late packet of an event already reported
			return 0, false
		case !marker && !d.ended && e.Event == d.event && d.duration >= 0xFFFF-SampleRate:
			// A long event goes on in a new segment with a new
			// timestamp once its duration is about to overflow
			// (§2.5.1.3): the same press, not a new one.
			d.ts, d.ended, d.duration = timestamp, e.End, e.Duration
			return 0, false
		}
	}
	d.seen, d.ts, d.event, d.ended, d.duration = true, timestamp, e.Event, e.End, e.Duration
	return e.Digit()
}

// Reset forgets the events seen, for a new RTP stream (a new SSRC), whose
// timestamps bear no relation to the old one's.
func (d *DTMFDetector) Reset() { *d = DTMFDetector{} }

// ParseInfoDTMF reads the digit in the body of a SIP INFO request:
// "application/dtmf-relay" (the de facto format, "Signal=5\r\nDuration=160")
// or "application/dtmf" (the digit alone). Signals are digits, *, #, A-D,
// or the RFC 4733 event codes 10-15 some gateways send for * # A-D.
func ParseInfoDTMF(contentType string, body []byte) (rune, bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, false
	}
	switch mt {
	case "application/dtmf-relay":
		for len(body) > 0 {
			var line []byte
			line, body, _ = bytes.Cut(body, []byte("\n"))
			key, value, ok := bytes.Cut(line, []byte("="))
			if ok && strings.EqualFold(string(bytes.TrimSpace(key)), "signal") {
				return parseSignal(bytes.TrimSpace(value))
			}
		}
		return 0, false
	case "application/dtmf":
		return parseSignal(bytes.TrimSpace(body))
	}
	return 0, false
}

func parseSignal(s []byte) (rune, bool) {
	switch len(s) {
	case 1:
		if c, ok := DigitEvent(rune(s[0])); ok {
			return eventDigit(c)
		}
	case 2:
		if s[0] == '1' && s[1] >= '0' && s[1] <= '5' {
			return eventDigit(10 + s[1] - '0')
		}
	}
	return 0, false
}
