package media

import (
	"math"
	"testing"
)

func TestG711KnownValues(t *testing.T) {
	tests := []struct {
		name   string
		linear int16
		ulaw   byte
		alaw   byte
	}{
		{"zero", 0, 0xFF, 0xD5},
		{"minus one", -1, 0x7F, 0x55},
		{"positive full scale", 32767, 0x80, 0xAA},
		{"negative full scale", -32768, 0x00, 0x2A},
		{"one thousand", 1000, 0xCE, 0xFA},
		{"minus one thousand", -1000, 0x4E, 0x7A},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LinearToULaw(tt.linear); got != tt.ulaw {
				t.Errorf("LinearToULaw(%d) = %#02x, want %#02x", tt.linear, got, tt.ulaw)
			}
			if got := LinearToALaw(tt.linear); got != tt.alaw {
				t.Errorf("LinearToALaw(%d) = %#02x, want %#02x", tt.linear, got, tt.alaw)
			}
		})
	}
	decodes := []struct {
		name string
		code byte
		ulaw int16
		alaw int16
	}{
		{"0x00", 0x00, -32124, -5504},
		{"0x80", 0x80, 32124, 5504},
		{"0xFF", 0xFF, 0, 848},
		{"0x7F", 0x7F, 0, -848},
		{"0xD5", 0xD5, 716, 8},
		{"0x55", 0x55, -716, -8},
		{"0xAA", 0xAA, 5372, 32256},
		{"0x2A", 0x2A, -5372, -32256},
	}
	for _, tt := range decodes {
		t.Run("decode "+tt.name, func(t *testing.T) {
			if got := ULawToLinear(tt.code); got != tt.ulaw {
				t.Errorf("ULawToLinear(%#02x) = %d, want %d", tt.code, got, tt.ulaw)
			}
			if got := ALawToLinear(tt.code); got != tt.alaw {
				t.Errorf("ALawToLinear(%#02x) = %d, want %d", tt.code, got, tt.alaw)
			}
		})
	}
}

// TestG711RoundTrip checks every 16-bit sample survives encoding within
// the G.711 quantisation error: about 1/32 of its magnitude (a 4-bit
// mantissa), plus the smallest step, with full-scale values clipped.
func TestG711RoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		encode   func(int16) byte
		decode   func(byte) int16
		minStep  float64
		clipping float64
	}{
		{"ulaw", LinearToULaw, ULawToLinear, 8, 32124 + 512},
		{"alaw", LinearToALaw, ALawToLinear, 16, 32256 + 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for x := math.MinInt16; x <= math.MaxInt16; x++ {
				got := float64(tt.decode(tt.encode(int16(x))))
				abs := math.Abs(float64(x))
				if abs >= tt.clipping {
					if math.Abs(got) < tt.clipping-1024 || got*float64(x) < 0 {
						t.Fatalf("%d decodes to %v, want the full-scale code", x, got)
					}
					continue
				}
				err := math.Abs(got - float64(x))
				if bound := abs/32 + tt.minStep; err > bound {
					t.Fatalf("%d decodes to %v: error %v > %v", x, got, err, bound)
				}
			}
		})
	}
}

// TestG711CodesAreStable checks that decoding then re-encoding any code
// lands on a code with the same value (µ-law has two zeros, 0x7F and 0xFF).
func TestG711CodesAreStable(t *testing.T) {
	for i := range 256 {
		b := byte(i)
		if v := ULawToLinear(b); ULawToLinear(LinearToULaw(v)) != v {
			t.Errorf("ulaw %#02x: %d re-encodes to %#02x", b, v, LinearToULaw(v))
		}
		if v := ALawToLinear(b); LinearToALaw(v) != b {
			t.Errorf("alaw %#02x: %d re-encodes to %#02x", b, v, LinearToALaw(v))
		}
	}
}

func TestG711Monotonic(t *testing.T) {
	prevU, prevA := ULawToLinear(LinearToULaw(math.MinInt16)), ALawToLinear(LinearToALaw(math.MinInt16))
	for x := math.MinInt16 + 1; x <= math.MaxInt16; x++ {
		u, a := ULawToLinear(LinearToULaw(int16(x))), ALawToLinear(LinearToALaw(int16(x)))
		if u < prevU || a < prevA {
			t.Fatalf("not monotonic at %d", x)
		}
		prevU, prevA = u, a
	}
}

func TestG711Slices(t *testing.T) {
	pcm := []int16{0, 1000, -1000, 32767, -32768}
	tests := []struct {
		name   string
		encode func([]byte, []int16) int
		decode func([]int16, []byte) int
		one    func(int16) byte
	}{
		{"ulaw", EncodeULaw, DecodeULaw, LinearToULaw},
		{"alaw", EncodeALaw, DecodeALaw, LinearToALaw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := make([]byte, len(pcm)+2)
			enc[len(pcm)] = 0x42
			if n := tt.encode(enc, pcm); n != len(pcm) {
				t.Fatalf("encode returned %d, want %d", n, len(pcm))
			}
			if enc[len(pcm)] != 0x42 {
				t.Error("encode wrote past the samples it was given")
			}
			for i, s := range pcm {
				if enc[i] != tt.one(s) {
					t.Errorf("sample %d: %#02x, want %#02x", i, enc[i], tt.one(s))
				}
			}
			short := make([]int16, 3)
			if n := tt.decode(short, enc[:len(pcm)]); n != 3 {
				t.Errorf("decode into 3 samples returned %d", n)
			}
			if n := tt.encode(enc[:2], pcm); n != 2 {
				t.Errorf("encode into 2 bytes returned %d", n)
			}
		})
	}
}

func TestG711Transcode(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	toA := make([]byte, 256)
	back := make([]byte, 256)
	if n := ULawToALaw(toA, all); n != 256 {
		t.Fatalf("ULawToALaw returned %d", n)
	}
	for i, b := range all {
		if want := LinearToALaw(ULawToLinear(b)); toA[i] != want {
			t.Errorf("ULawToALaw(%#02x) = %#02x, want %#02x", b, toA[i], want)
		}
	}
	ALawToULaw(back, toA)
	for i, b := range all {
		u, rt := float64(ULawToLinear(b)), float64(ULawToLinear(back[i]))
		// Two quantisations: within one A-law step of the original,
		// the coarser of the two laws near zero.
		if math.Abs(u-rt) > math.Abs(u)/16+32 {
			t.Errorf("µ-law %#02x (%v) → A-law → µ-law %#02x (%v)", b, u, back[i], rt)
		}
	}
	ALawToULaw(toA, all)
	for i, b := range all {
		if want := LinearToULaw(ALawToLinear(b)); toA[i] != want {
			t.Errorf("ALawToULaw(%#02x) = %#02x, want %#02x", b, toA[i], want)
		}
	}
	// In place, as a Bridge transcodes.
	inPlace := append([]byte(nil), all...)
	ULawToALaw(inPlace, inPlace)
	ALawToULaw(inPlace, inPlace)
	ULawToALaw(toA, all)
	ALawToULaw(back, toA)
	if string(inPlace) != string(back) {
		t.Error("transcoding in place differs from transcoding into another slice")
	}
}

func TestG711DoesNotAllocate(t *testing.T) {
	pcm := make([]int16, 160)
	enc := make([]byte, 160)
	allocs := testing.AllocsPerRun(100, func() {
		EncodeULaw(enc, pcm)
		DecodeULaw(pcm, enc)
		EncodeALaw(enc, pcm)
		DecodeALaw(pcm, enc)
		ULawToALaw(enc, enc)
		ALawToULaw(enc, enc)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame, want 0", allocs)
	}
}

func BenchmarkEncodeULaw(b *testing.B) {
	pcm := make([]int16, 160)
	enc := make([]byte, 160)
	for i := range pcm {
		pcm[i] = int16(i * 200)
	}
	b.ReportAllocs()
	for b.Loop() {
		EncodeULaw(enc, pcm)
	}
}
