package media

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Direction is the direction of a media stream, from the point of view of
// the side whose description it is in (RFC 3264 §5.1, RFC 4566 §6). The
// zero Direction is SendRecv, what a description without a direction
// attribute means.
type Direction uint8

// The four directions of RFC 3264 §5.1.
const (
	SendRecv Direction = iota
	SendOnly
	RecvOnly
	Inactive
)

// String returns the attribute name: "sendrecv", "sendonly", ...
func (d Direction) String() string {
	switch d {
	case SendOnly:
		return "sendonly"
	case RecvOnly:
		return "recvonly"
	case Inactive:
		return "inactive"
	}
	return "sendrecv"
}

// Sends reports whether the side with this direction sends media.
func (d Direction) Sends() bool { return d == SendRecv || d == SendOnly }

// Receives reports whether the side with this direction receives media.
func (d Direction) Receives() bool { return d == SendRecv || d == RecvOnly }

// Reverse returns the direction the other side answers with (RFC 3264
// §6.1): sendonly with recvonly, recvonly with sendonly, the others
// alike. It is how an offer to hold the call (sendonly, or inactive)
// turns into an answer that stops Switchback sending.
func (d Direction) Reverse() Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	}
	return d
}

func parseDirection(s string) (Direction, bool) {
	switch s {
	case "sendrecv":
		return SendRecv, true
	case "sendonly":
		return SendOnly, true
	case "recvonly":
		return RecvOnly, true
	case "inactive":
		return Inactive, true
	}
	return SendRecv, false
}

// Format is one payload format of an m= line: its payload type with what
// its rtpmap and fmtp attributes say (RFC 4566 §6), or, for a static
// payload type without rtpmap, what RFC 3551 Table 4 assigns it.
type Format struct {
	PayloadType uint8
	// Name is the encoding name as written ("PCMU", "telephone-event").
	// It is empty for a dynamic payload type without rtpmap.
	Name string
	// ClockRate is the RTP clock rate in Hz.
	ClockRate int
	// Channels is the number of audio channels; 0 when not given (one).
	Channels int
	// Fmtp is the format's a=fmtp parameters, as written.
	Fmtp string
}

// codec returns the Codec this format is, if Switchback speaks it.
func (f Format) codec() Codec {
	if f.ClockRate != SampleRate || f.Channels > 1 {
		return 0
	}
	switch {
	case strings.EqualFold(f.Name, "PCMU"):
		return PCMU
	case strings.EqualFold(f.Name, "PCMA"):
		return PCMA
	}
	return 0
}

func (f Format) isTelephoneEvent() bool {
	return strings.EqualFold(f.Name, "telephone-event") && f.ClockRate == SampleRate
}

// staticFormats are RFC 3551 Table 4's static audio payload types, which
// an m= line may list without rtpmap.
var staticFormats = map[uint8]Format{
	0:  {Name: "PCMU", ClockRate: 8000},
	3:  {Name: "GSM", ClockRate: 8000},
	4:  {Name: "G723", ClockRate: 8000},
	5:  {Name: "DVI4", ClockRate: 8000},
	6:  {Name: "DVI4", ClockRate: 16000},
	7:  {Name: "LPC", ClockRate: 8000},
	8:  {Name: "PCMA", ClockRate: 8000},
	9:  {Name: "G722", ClockRate: 8000},
	10: {Name: "L16", ClockRate: 44100, Channels: 2},
	11: {Name: "L16", ClockRate: 44100},
	12: {Name: "QCELP", ClockRate: 8000},
	13: {Name: "CN", ClockRate: 8000},
	14: {Name: "MPA", ClockRate: 90000},
	15: {Name: "G728", ClockRate: 8000},
	16: {Name: "DVI4", ClockRate: 11025},
	17: {Name: "DVI4", ClockRate: 22050},
	18: {Name: "G729", ClockRate: 8000},
}

// MediaLine is one m= line of a description (RFC 4566 §5.14), kept so an
// answer can mirror every line of its offer (RFC 3264 §6).
type MediaLine struct {
	Media   string   // "audio", "video", "image", ...
	Port    int      // 0: the stream is disabled
	Proto   string   // "RTP/AVP", "RTP/SAVP", "udptl", ...
	Formats []string // the <fmt> list as written
}

// Offer is what Switchback needs of a session description: the first
// usable audio stream of an offer, or of an answer to its own offer.
type Offer struct {
	// SessionID and SessionVersion are the o= line's (RFC 4566 §5.2): a
	// new offer with an unchanged version describes unchanged media
	// (RFC 3264 §8).
	SessionID      uint64
	SessionVersion uint64

	// Media lists every m= line, in order; Audio indexes the one
	// described by the fields below.
	Media []MediaLine
	Audio int

	// Addr is where the peer receives RTP: the audio stream's connection
	// address (its own c= line, or the session's) and port.
	Addr netip.AddrPort
	// Formats are the audio stream's payload formats, in the peer's
	// order of preference (RFC 3264 §5.1).
	Formats []Format
	// TelephoneEvent is the RFC 4733 telephone-event format at 8 kHz,
	// if offered (its Fmtp lists the events, "0-16" say).
	TelephoneEvent *Format
	// Direction is the stream's direction as the peer wrote it, from the
	// media or else the session attributes. A connection address of
	// 0.0.0.0, the RFC 2543 way of holding a call (RFC 3264 §8.4), makes
	// it sendonly (or inactive, if it was recvonly).
	Direction Direction
	// Ptime is the packet time the peer asked for, in milliseconds; 0
	// when it did not say (RFC 4566 §6).
	Ptime int
}

var errNoSDP = errors.New("sdp: empty body")

// ParseOffer parses a session description (RFC 4566) and picks its first
// audio stream on plain RTP (RTP/AVP or RTP/AVPF) that is not disabled.
// It first puts right what real-world SIP gear gets wrong but pion/sdp
// rejects: lines out of the RFC 4566 §5 order (a session c= after t=,
// say), LF or mixed line ends, blank lines, missing s= or t= lines, and
// m= lines pion does not know (T.38 "image" streams); see normalizeSDP.
//
// A description that does not parse is an error to answer with 400 Bad
// Request; one without a usable audio stream is a *NotAcceptableError
// (488).
func ParseOffer(b []byte) (*Offer, error) {
	norm, media, err := normalizeSDP(b)
	if err != nil {
		return nil, err
	}
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(norm); err != nil {
		return nil, fmt.Errorf("sdp: %w", err)
	}
	o := &Offer{
		SessionID:      desc.Origin.SessionID,
		SessionVersion: desc.Origin.SessionVersion,
		Audio:          -1,
	}
	var audio *sdp.MediaDescription
	for i, m := range media {
		o.Media = append(o.Media, m.line)
		if o.Audio < 0 && m.line.Media == "audio" && m.line.Port != 0 && isPlainRTP(m.line.Proto) && m.pion >= 0 {
			o.Audio = i
			audio = desc.MediaDescriptions[m.pion]
		}
	}
	if audio == nil {
		return nil, &NotAcceptableError{Reason: noAudioReason(o.Media)}
	}

	conn := audio.ConnectionInformation
	if conn == nil {
		conn = desc.ConnectionInformation
	}
	if conn == nil || conn.Address == nil {
		return nil, errors.New("sdp: no connection address for the audio stream")
	}
	ip, err := netip.ParseAddr(conn.Address.Address)
	if err != nil {
		return nil, &NotAcceptableError{Reason: fmt.Sprintf("connection address %q is not an IP address", conn.Address.Address)}
	}
	o.Addr = netip.AddrPortFrom(ip.Unmap(), uint16(audio.MediaName.Port.Value))

	if o.Formats, err = audioFormats(audio); err != nil {
		return nil, err
	}
	for i := range o.Formats {
		if o.Formats[i].isTelephoneEvent() {
			o.TelephoneEvent = &o.Formats[i]
			break
		}
	}

	// RFC 3264 §5.1: a direction attribute at media level wins over one
	// at session level; neither means sendrecv.
	for _, a := range desc.Attributes {
		if d, ok := parseDirection(a.Key); ok {
			o.Direction = d
		}
	}
	for _, a := range audio.Attributes {
		if d, ok := parseDirection(a.Key); ok {
			o.Direction = d
		}
	}
	if ip.IsUnspecified() {
		switch o.Direction {
		case SendRecv:
			o.Direction = SendOnly
		case RecvOnly:
			o.Direction = Inactive
		}
	}
	if v, ok := audio.Attribute("ptime"); ok {
		if ms, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && ms > 0 && ms <= 1000 {
			o.Ptime = ms
		}
	}
	return o, nil
}

func isPlainRTP(proto string) bool {
	return proto == "RTP/AVP" || proto == "RTP/AVPF"
}

func noAudioReason(media []MediaLine) string {
	for _, m := range media {
		if m.Media == "audio" && m.Port != 0 {
			return fmt.Sprintf("audio over %s is not supported, only RTP/AVP", m.Proto)
		}
	}
	return "no audio stream offered"
}

// audioFormats reads the payload formats of an m= line with their rtpmap
// and fmtp attributes (RFC 4566 §6).
func audioFormats(m *sdp.MediaDescription) ([]Format, error) {
	rtpmaps := map[uint8]Format{}
	fmtps := map[uint8]string{}
	for _, a := range m.Attributes {
		switch a.Key {
		case "rtpmap":
			// a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
			pt, rest, ok := cutPayloadType(a.Value)
			if !ok {
				continue
			}
			parts := strings.Split(rest, "/")
			if len(parts) < 2 {
				continue
			}
			rate, err := strconv.Atoi(parts[1])
			if err != nil || rate <= 0 {
				continue
			}
			f := Format{Name: parts[0], ClockRate: rate}
			if len(parts) > 2 {
				f.Channels, _ = strconv.Atoi(parts[2])
			}
			if _, dup := rtpmaps[pt]; !dup {
				rtpmaps[pt] = f
			}
		case "fmtp":
			if pt, rest, ok := cutPayloadType(a.Value); ok {
				if _, dup := fmtps[pt]; !dup {
					fmtps[pt] = rest
				}
			}
		}
	}
	var formats []Format
	for _, s := range m.MediaName.Formats {
		n, err := strconv.ParseUint(s, 10, 8)
		if err != nil || n > 127 {
			return nil, fmt.Errorf("sdp: payload type %q is not 0-127", s)
		}
		pt := uint8(n)
		if slices.ContainsFunc(formats, func(f Format) bool { return f.PayloadType == pt }) {
			continue
		}
		f, ok := rtpmaps[pt]
		if !ok {
			f = staticFormats[pt]
		}
		f.PayloadType = pt
		f.Fmtp = fmtps[pt]
		formats = append(formats, f)
	}
	return formats, nil
}

// cutPayloadType splits "<payload type> <rest>" as rtpmap and fmtp
// attribute values start.
func cutPayloadType(v string) (uint8, string, bool) {
	s, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n > 127 {
		return 0, "", false
	}
	return uint8(n), strings.TrimSpace(rest), true
}

// NotAcceptableError says a description is well formed but asks for media
// Switchback cannot take, or offers none it can: the SIP layer answers 488
// Not Acceptable Here (RFC 3261 §21.4.26; RFC 3264 §6 for the offer it
// cannot answer).
type NotAcceptableError struct {
	Reason string
}

// Error returns the reason.
func (e *NotAcceptableError) Error() string { return "sdp: not acceptable: " + e.Reason }

// SIPStatus returns 488, the SIP status the error maps to.
func (e *NotAcceptableError) SIPStatus() int { return 488 }
