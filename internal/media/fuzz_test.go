package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The fuzz targets' seeds are the files under testdata/fuzz/<target>,
// which `go test` also runs as regression cases.

func FuzzLoadWAV(f *testing.F) {
	var buf bytes.Buffer
	WriteWAV(&buf, []int16{0, 1, -1, 1000}, 8000)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		pcm, err := LoadWAV(bytes.NewReader(b))
		if err != nil {
			if pcm != nil {
				t.Error("samples with an error")
			}
			return
		}
		// At least a byte a sample at 8 kHz; fewer samples at higher
		// rates.
		if len(pcm) > len(b) {
			t.Errorf("%d samples from %d bytes", len(pcm), len(b))
		}
		var out bytes.Buffer
		if err := WriteWAV(&out, pcm, SampleRate); err != nil {
			t.Fatal(err)
		}
		back, err := LoadWAV(&out)
		if err != nil || !equal16(back, pcm) {
			t.Errorf("WriteWAV then LoadWAV: %d samples of %d, %v", len(back), len(pcm), err)
		}
	})
}

// FuzzParseOffer checks that whatever ParseOffer takes, Switchback can
// answer, and the answer parses back to the same choice.
func FuzzParseOffer(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "sdp", "*.sdp"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	local := netip.MustParseAddrPort("192.0.2.1:20000")
	f.Fuzz(func(t *testing.T, b []byte) {
		offer, err := ParseOffer(b)
		if err != nil {
			return
		}
		if offer.Audio < 0 || offer.Audio >= len(offer.Media) || !offer.Addr.IsValid() {
			t.Fatalf("offer without its audio stream: %+v", offer)
		}
		p, err := Negotiate(offer, pcmuPCMA)
		if err != nil {
			var na *NotAcceptableError
			if !errors.As(err, &na) {
				t.Fatalf("Negotiate error %T: %v", err, err)
			}
			return
		}
		answer, err := BuildSDP(NewOrigin(), p.AnswerDescription(local, offer))
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseOffer(answer)
		if err != nil {
			t.Fatalf("answer does not parse: %v\n%s", err, answer)
		}
		if len(back.Media) != len(offer.Media) || back.Audio != offer.Audio || back.Addr != local || back.Direction != p.Direction {
			t.Fatalf("answer parses as %+v\n%s", back, answer)
		}
		q, err := Negotiate(back, []Codec{p.Codec})
		if err != nil || q.Codec != p.Codec || q.PayloadType != p.PayloadType || q.DTMF != p.DTMF {
			t.Fatalf("answer negotiates %+v, %v; want %+v", q, err, p)
		}
	})
}

// FuzzDTMF feeds a detector packets cut from the input: 4 bytes of
// payload, 4 of timestamp, 1 of marker.
func FuzzDTMF(f *testing.F) {
	f.Add([]byte("\x05\x0a\x00\xa0\x00\x00\x03\xe8\x01\x05\x8a\x01\x40\x00\x00\x03\xe8\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := ParseDTMFEvent(b); err == nil {
			var out [4]byte
			e.MarshalTo(out[:])
			if back, _ := ParseDTMFEvent(out[:]); back != e || out[0] != b[0] || out[1] != b[1]&^0x40 || !bytes.Equal(out[2:], b[2:4]) {
				t.Errorf("%x parses as %+v, which marshals to %x", b[:4], e, out)
			}
		}
		var d DTMFDetector
		stamps := map[uint32]bool{}
		digits := 0
		for len(b) >= 9 {
			ts := binary.BigEndian.Uint32(b[4:8])
			stamps[ts] = true
			if r, ok := d.Feed(b[:4], ts, b[8]&1 == 1); ok {
				digits++
				if !strings.ContainsRune(dtmfDigits, r) {
					t.Fatalf("digit %q", r)
				}
			}
			b = b[9:]
		}
		if digits > len(stamps) {
			t.Errorf("%d digits from %d timestamps", digits, len(stamps))
		}
	})
}

func FuzzParseInfoDTMF(f *testing.F) {
	f.Add("application/dtmf-relay", []byte("Signal=5\r\nDuration=160\r\n"))
	f.Add("application/dtmf", []byte("#"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		if r, ok := ParseInfoDTMF(contentType, body); ok && !strings.ContainsRune(dtmfDigits, r) {
			t.Errorf("digit %q", r)
		}
	})
}

// FuzzReceive hands a Session's receive path arbitrary datagrams.
func FuzzReceive(f *testing.F) {
	f.Add([]byte("\x80\x00\x00\x01\x00\x00\x00\xa0\x00\x00\x00\x07\xff\xff\xff\xff"))
	f.Add([]byte("\x80\x65\x00\x02\x00\x00\x00\xa0\x00\x00\x00\x07\x05\x8a\x01\x40"))
	s, err := ListenRTP(loopback, PortRange{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	s.setParams(params(PCMU, netip.MustParseAddrPort("127.0.0.1:9")))
	from := netip.MustParseAddrPort("127.0.0.1:9")
	f.Fuzz(func(t *testing.T, b []byte) {
		rx := newReceiver()
		s.receive(rx, b, from, time.Now())
		for len(s.audio) > 0 {
			<-s.audio
		}
		for len(s.digits) > 0 {
			<-s.digits
		}
	})
}
