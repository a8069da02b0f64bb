package media

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readSDP(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sdp", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var pcmuPCMA = []Codec{PCMU, PCMA}

// TestParseOfferRealWorld parses descriptions in the styles of the
// gear Switchback meets, and negotiates each against PCMU and PCMA.
func TestParseOfferRealWorld(t *testing.T) {
	te := func(pt uint8, fmtp string) *Format {
		return &Format{PayloadType: pt, Name: "telephone-event", ClockRate: 8000, Fmtp: fmtp}
	}
	tests := []struct {
		file      string
		addr      string
		pts       []uint8
		te        *Format
		direction Direction
		ptime     int
		media     int // m= lines
		audio     int
		want      Params // Remote, Ptime filled in from the fields above
	}{
		{"asterisk.sdp", "192.0.2.10:10028", []uint8{0, 8, 3, 101}, te(101, "0-16"), SendRecv, 20, 1, 0,
			Params{Codec: PCMU, PayloadType: 0, DTMF: true, DTMFPayloadType: 101}},
		{"freeswitch.sdp", "198.51.100.5:16384", []uint8{9, 102, 0, 8, 101, 13}, te(101, "0-16"), SendRecv, 20, 1, 0,
			Params{Codec: PCMU, PayloadType: 0, DTMF: true, DTMFPayloadType: 101}},
		{"cisco-cube.sdp", "203.0.113.21:16434", []uint8{18, 8, 0, 101, 19}, te(101, "0-16"), SendRecv, 20, 1, 0,
			Params{Codec: PCMA, PayloadType: 8, DTMF: true, DTMFPayloadType: 101}},
		{"baresip.sdp", "10.0.0.2:10046", []uint8{0, 8, 101}, te(101, "0-15"), SendRecv, 20, 1, 0,
			Params{Codec: PCMU, PayloadType: 0, DTMF: true, DTMFPayloadType: 101}},
		{"c-after-t.sdp", "192.0.2.1:4000", []uint8{8, 101}, te(101, "0-15"), SendRecv, 0, 1, 0,
			Params{Codec: PCMA, PayloadType: 8, DTMF: true, DTMFPayloadType: 101}},
		{"ipv6.sdp", "[2001:db8::1]:30000", []uint8{0, 101}, te(101, "0-16"), SendRecv, 20, 1, 0,
			Params{Codec: PCMU, PayloadType: 0, DTMF: true, DTMFPayloadType: 101}},
		{"hold-sendonly.sdp", "192.0.2.77:11780", []uint8{0, 8, 101}, te(101, "0-15"), SendOnly, 20, 1, 0,
			Params{Codec: PCMU, PayloadType: 0, DTMF: true, DTMFPayloadType: 101, Direction: RecvOnly}},
		{"hold-zero-address.sdp", "0.0.0.0:7078", []uint8{0}, nil, SendOnly, 0, 1, 0,
			Params{Codec: PCMU, PayloadType: 0, Direction: RecvOnly}},
		{"video-audio-image.sdp", "192.0.2.51:7078", []uint8{96, 0, 8, 97}, nil, Inactive, 0, 3, 1,
			Params{Codec: PCMU, PayloadType: 0, Direction: Inactive}},
		{"srtp-and-rtp.sdp", "192.0.2.9:5006", []uint8{0, 101}, te(101, ""), SendRecv, 0, 2, 1,
			Params{Codec: PCMU, PayloadType: 0, DTMF: true, DTMFPayloadType: 101}},
		{"quirks.sdp", "192.0.2.3:8000", []uint8{112, 110}, te(110, ""), RecvOnly, 0, 1, 0,
			Params{Codec: PCMU, PayloadType: 112, DTMF: true, DTMFPayloadType: 110, Direction: SendOnly}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			o, err := ParseOffer(readSDP(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Addr.String(); got != tt.addr {
				t.Errorf("Addr %s, want %s", got, tt.addr)
			}
			var pts []uint8
			for _, f := range o.Formats {
				pts = append(pts, f.PayloadType)
			}
			if !reflect.DeepEqual(pts, tt.pts) {
				t.Errorf("payload types %v, want %v", pts, tt.pts)
			}
			if !reflect.DeepEqual(o.TelephoneEvent, tt.te) {
				t.Errorf("TelephoneEvent %+v, want %+v", o.TelephoneEvent, tt.te)
			}
			if o.Direction != tt.direction {
				t.Errorf("Direction %v, want %v", o.Direction, tt.direction)
			}
			if o.Ptime != tt.ptime {
				t.Errorf("Ptime %d, want %d", o.Ptime, tt.ptime)
			}
			if len(o.Media) != tt.media || o.Audio != tt.audio {
				t.Errorf("%d m= lines with audio at %d, want %d at %d", len(o.Media), o.Audio, tt.media, tt.audio)
			}
			p, err := Negotiate(o, pcmuPCMA)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Remote, tt.want.Ptime = netip.MustParseAddrPort(tt.addr), tt.ptime
			if p != tt.want {
				t.Errorf("Negotiate = %+v\nwant %+v", p, tt.want)
			}
		})
	}
}

func TestParseOfferFormats(t *testing.T) {
	o, err := ParseOffer(readSDP(t, "freeswitch.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Format{
		{PayloadType: 9, Name: "G722", ClockRate: 8000},
		{PayloadType: 102, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "useinbandfec=1; maxplaybackrate=48000; stereo=1"},
		{PayloadType: 0, Name: "PCMU", ClockRate: 8000},
		{PayloadType: 8, Name: "PCMA", ClockRate: 8000},
		{PayloadType: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"},
		{PayloadType: 13, Name: "CN", ClockRate: 8000},
	}
	if !reflect.DeepEqual(o.Formats, want) {
		t.Errorf("Formats\n%+v\nwant\n%+v", o.Formats, want)
	}
	if o.SessionID != 1686900000 || o.SessionVersion != 1686900001 {
		t.Errorf("origin %d %d", o.SessionID, o.SessionVersion)
	}
	wantMedia := []MediaLine{{Media: "audio", Port: 16384, Proto: "RTP/AVP", Formats: []string{"9", "102", "0", "8", "101", "13"}}}
	if !reflect.DeepEqual(o.Media, wantMedia) {
		t.Errorf("Media %+v", o.Media)
	}
}

func TestParseOfferErrors(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	tests := []struct {
		name          string
		sdp           string
		notAcceptable bool
		want          string
	}{
		{"empty", "", false, "empty body"},
		{"blank lines", "\r\n\r\n", false, "empty body"},
		{"not sdp", "hello world", false, `line "hello world" is not <type>=<value>`},
		{"no origin", "v=0\r\ns=-\r\n", false, "no o= line"},
		{"bad origin", "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n", false, "sdp:"},
		{"bad port", head + "m=audio 99999 RTP/AVP 0\r\n", false, "bad port"},
		{"short m line", head + "m=audio 4000\r\n", false, "fewer than 3 fields"},
		{"bad payload type", head + "m=audio 4000 RTP/AVP 200\r\n", false, `payload type "200" is not 0-127`},
		{"no connection", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", false, "no connection address"},
		{"no media", head, true, "no audio stream offered"},
		{"video only", head + "m=video 4000 RTP/AVP 96\r\n", true, "no audio stream offered"},
		{"audio disabled", head + "m=audio 0 RTP/AVP 0\r\n", true, "no audio stream offered"},
		{"srtp only", string(readSDP(t, "srtp-only.sdp")), true, "audio over RTP/SAVP is not supported"},
		{"host name", strings.Replace(head, "c=IN IP4 192.0.2.1", "c=IN IP4 pbx.example.com", 1) + "m=audio 4000 RTP/AVP 0\r\n", true, `"pbx.example.com" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseOffer([]byte(tt.sdp))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want one containing %q", err, tt.want)
			}
			var na *NotAcceptableError
			if errors.As(err, &na) != tt.notAcceptable {
				t.Errorf("error %T, NotAcceptableError: %v", err, tt.notAcceptable)
			}
		})
	}
}

func TestNegotiateNoCommonCodec(t *testing.T) {
	o, err := ParseOffer(readSDP(t, "g729-only.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Negotiate(o, pcmuPCMA)
	var na *NotAcceptableError
	if !errors.As(err, &na) || na.SIPStatus() != 488 {
		t.Fatalf("error %v, want a NotAcceptableError for 488", err)
	}
	if want := "no codec in common: offered G729/8000 telephone-event/8000, supported PCMU PCMA"; na.Reason != want {
		t.Errorf("reason %q, want %q", na.Reason, want)
	}
	// PCMA alone is not in an offer of PCMU alone either.
	o, _ = ParseOffer(readSDP(t, "ipv6.sdp"))
	if _, err := Negotiate(o, []Codec{PCMA}); !errors.As(err, &na) {
		t.Errorf("PCMU offer, PCMA supported: %v", err)
	}
}

// TestNormalizeSDP pins the normalised text pion/sdp gets.
func TestNormalizeSDP(t *testing.T) {
	got, media, err := normalizeSDP(readSDP(t, "video-audio-image.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	want := "v=0\r\no=linphone 1111 2222 IN IP4 192.0.2.50\r\ns=Talk\r\nt=0 0\r\n" +
		"m=video 9078 RTP/AVP 96\r\nc=IN IP4 192.0.2.50\r\na=rtpmap:96 VP8/90000\r\n" +
		"m=audio 7078 RTP/AVP 96 0 8 97\r\nc=IN IP4 192.0.2.51\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:97 telephone-event/48000\r\na=inactive\r\n"
	if got != want {
		t.Errorf("normalised\n%q\nwant\n%q", got, want)
	}
	if len(media) != 3 || media[0].pion != 0 || media[1].pion != 1 || media[2].pion != -1 {
		t.Errorf("media %+v", media)
	}

	got, _, err = normalizeSDP([]byte("v=0\no=- 1 1 IN IP4 1.2.3.4\na=x\nk=prompt\nz=0 0\nr=7d 1h 0\nt=0 0\nr=1d 1h 0\nt=1 2\nb=AS:64\nb=BOGUS:1\nc=IN IP4 1.2.3.4\nc=IN IP4 5.6.7.8\ns=late\nv=0\n"))
	if err != nil {
		t.Fatal(err)
	}
	want = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=late\r\nc=IN IP4 1.2.3.4\r\nb=AS:64\r\nt=0 0\r\nr=1d 1h 0\r\nt=1 2\r\nz=0 0\r\nk=prompt\r\na=x\r\n"
	if got != want {
		t.Errorf("normalised\n%q\nwant\n%q", got, want)
	}
}

func TestBuildSDPAnswer(t *testing.T) {
	local := netip.MustParseAddrPort("192.0.2.200:20000")
	tests := []struct {
		file   string
		local  netip.AddrPort
		answer string
	}{
		{"asterisk.sdp", local, "v=0\r\no=switchback 123 1 IN IP4 192.0.2.200\r\ns=switchback\r\nc=IN IP4 192.0.2.200\r\nt=0 0\r\n" +
			"m=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"},
		{"hold-sendonly.sdp", local, "v=0\r\no=switchback 123 1 IN IP4 192.0.2.200\r\ns=switchback\r\nc=IN IP4 192.0.2.200\r\nt=0 0\r\n" +
			"m=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=recvonly\r\n"},
		{"video-audio-image.sdp", local, "v=0\r\no=switchback 123 1 IN IP4 192.0.2.200\r\ns=switchback\r\nc=IN IP4 192.0.2.200\r\nt=0 0\r\n" +
			"m=video 0 RTP/AVP 96\r\n" +
			"m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=inactive\r\n" +
			"m=image 0 udptl t38\r\n"},
		{"quirks.sdp", netip.MustParseAddrPort("[2001:db8::5]:20002"), "v=0\r\no=switchback 123 1 IN IP6 2001:db8::5\r\ns=switchback\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\n" +
			"m=audio 20002 RTP/AVP 112 110\r\na=rtpmap:112 PCMU/8000\r\na=rtpmap:110 telephone-event/8000\r\na=fmtp:110 0-16\r\na=ptime:20\r\na=sendonly\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			offer, err := ParseOffer(readSDP(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			p, err := Negotiate(offer, pcmuPCMA)
			if err != nil {
				t.Fatal(err)
			}
			o := &Origin{Username: "switchback", SessionID: 123, Version: 1}
			b, err := BuildSDP(o, p.AnswerDescription(tt.local, offer))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.answer {
				t.Errorf("answer\n%s\nwant\n%s", b, tt.answer)
			}
			// The answer parses back to what it says.
			back, err := ParseOffer(b)
			if err != nil {
				t.Fatal(err)
			}
			if back.Addr != tt.local || len(back.Media) != len(offer.Media) || back.Audio != offer.Audio || back.Direction != p.Direction {
				t.Errorf("answer parses as %+v", back)
			}
		})
	}
}

// TestLateOffer runs Switchback's offer through a peer that supports only
// PCMA, and the peer's answer back.
func TestLateOffer(t *testing.T) {
	ours := NewOrigin()
	offer, err := BuildSDP(ours, OfferDescription(netip.MustParseAddrPort("192.0.2.200:20000"), pcmuPCMA))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(offer), "m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n") {
		t.Errorf("offer:\n%s", offer)
	}
	parsed, err := ParseOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := Negotiate(parsed, []Codec{PCMA})
	if err != nil {
		t.Fatal(err)
	}
	answer, err := BuildSDP(NewOrigin(), peer.AnswerDescription(netip.MustParseAddrPort("192.0.2.9:4000"), parsed))
	if err != nil {
		t.Fatal(err)
	}
	parsedAnswer, err := ParseOffer(answer)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Negotiate(parsedAnswer, pcmuPCMA)
	if err != nil {
		t.Fatal(err)
	}
	want := Params{Codec: PCMA, PayloadType: 8, DTMF: true, DTMFPayloadType: 101, Remote: netip.MustParseAddrPort("192.0.2.9:4000"), Ptime: 20}
	if p != want {
		t.Errorf("params %+v, want %+v", p, want)
	}
}

func TestOriginVersion(t *testing.T) {
	o := &Origin{SessionID: 9, Version: 5}
	d := OfferDescription(netip.MustParseAddrPort("192.0.2.1:20000"), pcmuPCMA)
	version := func() uint64 {
		t.Helper()
		b, err := BuildSDP(o, d)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := ParseOffer(b)
		if err != nil {
			t.Fatal(err)
		}
		if parsed.SessionID != 9 || parsed.SessionVersion != o.Version {
			t.Fatalf("o= %d %d, origin %+v", parsed.SessionID, parsed.SessionVersion, o)
		}
		if !strings.HasPrefix(string(b), "v=0\r\no=- 9 ") {
			t.Fatalf("description starts %q", b[:20])
		}
		return parsed.SessionVersion
	}
	steps := []struct {
		name   string
		change func()
		want   uint64
	}{
		{"first", func() {}, 5},
		{"unchanged", func() {}, 5},
		{"hold", func() { d.Direction = SendOnly }, 6},
		{"still on hold", func() {}, 6},
		{"resume", func() { d.Direction = SendRecv }, 7},
		{"new port", func() { d.Addr = netip.MustParseAddrPort("192.0.2.1:20002") }, 8},
	}
	for _, s := range steps {
		s.change()
		if got := version(); got != s.want {
			t.Errorf("%s: version %d, want %d", s.name, got, s.want)
		}
	}
	if NewOrigin().SessionID == NewOrigin().SessionID {
		t.Error("two origins share a session id")
	}
	if NewOrigin().SessionID >= 1<<63 {
		t.Error("session id above 2^63")
	}
}

func TestBuildSDPErrors(t *testing.T) {
	d := OfferDescription(netip.MustParseAddrPort("192.0.2.1:20000"), pcmuPCMA)
	if _, err := BuildSDP(nil, d); err == nil {
		t.Error("nil origin: no error")
	}
	if _, err := BuildSDP(NewOrigin(), Description{Formats: d.Formats}); err == nil {
		t.Error("no address: no error")
	}
	if _, err := BuildSDP(NewOrigin(), Description{Addr: d.Addr}); err == nil {
		t.Error("no formats: no error")
	}
}

func TestDirection(t *testing.T) {
	tests := []struct {
		d               Direction
		name            string
		reverse         Direction
		sends, receives bool
	}{
		{SendRecv, "sendrecv", SendRecv, true, true},
		{SendOnly, "sendonly", RecvOnly, true, false},
		{RecvOnly, "recvonly", SendOnly, false, true},
		{Inactive, "inactive", Inactive, false, false},
	}
	for _, tt := range tests {
		if tt.d.String() != tt.name || tt.d.Reverse() != tt.reverse || tt.d.Sends() != tt.sends || tt.d.Receives() != tt.receives {
			t.Errorf("%s: %s reverse %s sends %v receives %v", tt.name, tt.d, tt.d.Reverse(), tt.d.Sends(), tt.d.Receives())
		}
	}
}
