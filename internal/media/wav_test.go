package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

// wavFile builds a RIFF WAVE file from raw chunks, for the cases WriteWAV
// does not write.
type wavFile struct{ chunks []byte }

func (w *wavFile) chunk(id string, data []byte) *wavFile {
	w.chunks = append(w.chunks, id...)
	w.chunks = binary.LittleEndian.AppendUint32(w.chunks, uint32(len(data)))
	w.chunks = append(w.chunks, data...)
	if len(data)%2 == 1 {
		w.chunks = append(w.chunks, 0)
	}
	return w
}

func (w *wavFile) format(tag, channels, rate, bits int) *wavFile {
	var b []byte
	b = binary.LittleEndian.AppendUint16(b, uint16(tag))
	b = binary.LittleEndian.AppendUint16(b, uint16(channels))
	b = binary.LittleEndian.AppendUint32(b, uint32(rate))
	b = binary.LittleEndian.AppendUint32(b, uint32(rate*channels*bits/8))
	b = binary.LittleEndian.AppendUint16(b, uint16(channels*bits/8))
	b = binary.LittleEndian.AppendUint16(b, uint16(bits))
	return w.chunk("fmt ", b)
}

func (w *wavFile) bytes() []byte {
	b := []byte("RIFF")
	b = binary.LittleEndian.AppendUint32(b, uint32(4+len(w.chunks)))
	b = append(b, "WAVE"...)
	return append(b, w.chunks...)
}

func pcmBytes(pcm ...int16) []byte {
	var b []byte
	for _, s := range pcm {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	return b
}

func TestWriteWAVLoadWAVRoundTrip(t *testing.T) {
	pcm := []int16{0, 1, -1, 32767, -32768, 1234, -4321}
	var buf bytes.Buffer
	if err := WriteWAV(&buf, pcm, 8000); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 44+2*len(pcm) {
		t.Errorf("file is %d bytes, want %d", buf.Len(), 44+2*len(pcm))
	}
	got, err := LoadWAV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !equal16(got, pcm) {
		t.Errorf("got %v, want %v", got, pcm)
	}
}

func TestLoadWAV(t *testing.T) {
	extensible := func(tag int) []byte {
		var b []byte
		b = binary.LittleEndian.AppendUint16(b, waveExtensible)
		b = binary.LittleEndian.AppendUint16(b, 1)
		b = binary.LittleEndian.AppendUint32(b, 8000)
		b = binary.LittleEndian.AppendUint32(b, 16000)
		b = binary.LittleEndian.AppendUint16(b, 2)
		b = binary.LittleEndian.AppendUint16(b, 16)
		b = binary.LittleEndian.AppendUint16(b, 22)
		b = binary.LittleEndian.AppendUint16(b, 16)
		b = binary.LittleEndian.AppendUint32(b, 4)
		b = binary.LittleEndian.AppendUint16(b, uint16(tag))
		return append(b, "\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x71"...)
	}
	tests := []struct {
		name string
		file []byte
		want []int16
	}{
		{
			name: "mono pcm",
			file: new(wavFile).format(wavePCM, 1, 8000, 16).chunk("data", pcmBytes(1, 2, 3)).bytes(),
			want: []int16{1, 2, 3},
		},
		{
			name: "stereo averaged",
			file: new(wavFile).format(wavePCM, 2, 8000, 16).chunk("data", pcmBytes(100, 300, -32768, -32768, 32767, 32767)).bytes(),
			want: []int16{200, -32768, 32767},
		},
		{
			name: "ulaw",
			file: new(wavFile).format(waveMuLaw, 1, 8000, 8).chunk("data", []byte{0xFF, 0x80, 0x00}).bytes(),
			want: []int16{0, 32124, -32124},
		},
		{
			name: "alaw",
			file: new(wavFile).format(waveALaw, 1, 8000, 8).chunk("data", []byte{0xD5, 0xAA}).bytes(),
			want: []int16{8, 32256},
		},
		{
			name: "alaw stereo",
			file: new(wavFile).format(waveALaw, 2, 8000, 8).chunk("data", []byte{0xD5, 0x55}).bytes(),
			want: []int16{0},
		},
		{
			name: "LIST before fmt and odd chunk padded",
			file: new(wavFile).chunk("LIST", []byte("INFOISFT\x05\x00\x00\x00Lavf\x00")).chunk("odd ", []byte{1, 2, 3}).
				format(wavePCM, 1, 8000, 16).chunk("fact", []byte{1, 0, 0, 0}).chunk("data", pcmBytes(7, 8)).chunk("LIST", []byte("tail")).bytes(),
			want: []int16{7, 8},
		},
		{
			name: "odd data chunk drops the partial sample",
			file: new(wavFile).format(wavePCM, 1, 8000, 16).chunk("data", append(pcmBytes(5, 6), 0x7F)).bytes(),
			want: []int16{5, 6},
		},
		{
			name: "data before fmt",
			file: new(wavFile).chunk("data", pcmBytes(9)).format(wavePCM, 1, 8000, 16).bytes(),
			want: []int16{9},
		},
		{
			name: "extensible pcm",
			file: new(wavFile).chunk("fmt ", extensible(wavePCM)).chunk("data", pcmBytes(-3)).bytes(),
			want: []int16{-3},
		},
		{
			name: "fmt with cbSize",
			file: new(wavFile).chunk("fmt ", append(new(wavFile).format(wavePCM, 1, 8000, 16).chunks[8:], 0, 0)).chunk("data", pcmBytes(4)).bytes(),
			want: []int16{4},
		},
		{
			name: "streamed data size",
			file: append(new(wavFile).format(wavePCM, 1, 8000, 16).bytes(), append([]byte("data\xFF\xFF\xFF\xFF"), pcmBytes(1, 2)...)...),
			want: []int16{1, 2},
		},
		{
			name: "data size larger than the file",
			file: append(new(wavFile).format(wavePCM, 1, 8000, 16).bytes(), append([]byte("data\x00\x10\x00\x00"), pcmBytes(1, 2)...)...),
			want: []int16{1, 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadWAV(bytes.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !equal16(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoadWAVErrors(t *testing.T) {
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "unexpected EOF"},
		{"not riff", []byte("OggS\x00\x00\x00\x00WAVE"), "not a RIFF file"},
		{"rf64", []byte("RF64\x00\x00\x00\x00WAVE"), `"RF64" files are not supported`},
		{"not wave", []byte("RIFF\x04\x00\x00\x00AVI "), `RIFF form "AVI " is not WAVE`},
		{"24-bit", new(wavFile).format(wavePCM, 1, 8000, 24).chunk("data", nil).bytes(), "24-bit PCM is not supported"},
		{"8-bit", new(wavFile).format(wavePCM, 1, 8000, 8).chunk("data", nil).bytes(), "8-bit PCM is not supported"},
		{"float", new(wavFile).format(3, 1, 8000, 32).chunk("data", nil).bytes(), "format tag 0x0003 is not supported"},
		{"4 kHz", new(wavFile).format(wavePCM, 1, 4000, 16).chunk("data", nil).bytes(), "sample rate 4000 Hz is not supported"},
		{"96 kHz", new(wavFile).format(wavePCM, 1, 96000, 16).chunk("data", nil).bytes(), "sample rate 96000 Hz is not supported"},
		{"ulaw 16 kHz", new(wavFile).format(waveMuLaw, 1, 16000, 8).chunk("data", nil).bytes(), "G.711 at 16000 Hz is not supported"},
		{"six channels", new(wavFile).format(wavePCM, 6, 8000, 16).chunk("data", nil).bytes(), "6 channels are not supported"},
		{"no fmt", new(wavFile).chunk("data", pcmBytes(1)).bytes(), "no fmt chunk"},
		{"no data", new(wavFile).format(wavePCM, 1, 8000, 16).bytes(), "no data chunk"},
		{"short fmt", new(wavFile).chunk("fmt ", []byte{1, 0}).bytes(), "fmt chunk of 2 bytes"},
		{"truncated chunk", append(new(wavFile).format(wavePCM, 1, 8000, 16).bytes(), "LIST\x10\x00\x00\x00ab"...), `skip "LIST" chunk: unexpected EOF`},
		{"bad block align", func() []byte {
			w := new(wavFile).format(wavePCM, 1, 8000, 16)
			w.chunks[8+12] = 3
			return w.chunk("data", nil).bytes()
		}(), "block align 3, want 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadWAV(bytes.NewReader(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLoadWAVReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(new(wavFile).format(wavePCM, 1, 8000, 16).bytes()[:30]), errReader{boom})
	if _, err := LoadWAV(r); !errors.Is(err, boom) {
		t.Errorf("error %v, want %v", err, boom)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestLoadWAVResamples checks a tone keeps its frequency and amplitude
// through the resampler at every common rate, and that what lies above the
// new Nyquist frequency is filtered out instead of aliasing.
func TestLoadWAVResamples(t *testing.T) {
	tests := []struct {
		name     string
		rate     int
		channels int
		freq     float64
		wantGain float64 // output RMS over input RMS
	}{
		{"16 kHz 1 kHz", 16000, 1, 1000, 1},
		{"16 kHz stereo 1 kHz", 16000, 2, 1000, 1},
		{"48 kHz 1 kHz", 48000, 1, 1000, 1},
		{"44.1 kHz 1 kHz", 44100, 1, 1000, 1},
		{"22.05 kHz 3 kHz", 22050, 1, 3000, 1},
		{"11.025 kHz 440 Hz", 11025, 1, 440, 1},
		{"32 kHz 300 Hz", 32000, 1, 300, 1},
		{"odd rate 8001 Hz 1 kHz", 8001, 1, 1000, 1},
		{"odd rate 12345 Hz 2 kHz", 12345, 1, 2000, 1},
		{"48 kHz 6 kHz is filtered", 48000, 1, 6000, 0},
		{"16 kHz 5 kHz is filtered", 16000, 1, 5000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const seconds, amp = 1, 10000.0
			frames := tt.rate * seconds
			var data []byte
			for i := range frames {
				s := int16(amp * math.Sin(2*math.Pi*tt.freq*float64(i)/float64(tt.rate)))
				for range tt.channels {
					data = binary.LittleEndian.AppendUint16(data, uint16(s))
				}
			}
			file := new(wavFile).format(wavePCM, tt.channels, tt.rate, 16).chunk("data", data).bytes()
			got, err := LoadWAV(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			if want := frames * 8000 / tt.rate; len(got) != want {
				t.Fatalf("%d samples, want %d", len(got), want)
			}
			// Leave out the filter's edges, where the input stops.
			mid := got[100 : len(got)-100]
			rms := rms16(mid) / (amp / math.Sqrt2)
			if tt.wantGain == 0 {
				t.Logf("gain %.5f", rms)
				if rms > 0.01 {
					t.Errorf("gain %.4f above the cutoff, want < 0.01", rms)
				}
				return
			}
			if math.Abs(rms-tt.wantGain) > 0.01 {
				t.Errorf("gain %.4f, want %v ± 0.01", rms, tt.wantGain)
			}
			crossings := 0
			for i := 1; i < len(mid); i++ {
				if (mid[i-1] < 0) != (mid[i] < 0) {
					crossings++
				}
			}
			freq := float64(crossings) / 2 / (float64(len(mid)) / 8000)
			t.Logf("gain %.4f, %.1f Hz", rms, freq)
			if math.Abs(freq-tt.freq) > tt.freq*0.01 {
				t.Errorf("frequency %.1f Hz from zero crossings, want %v", freq, tt.freq)
			}
		})
	}
}

func rms16(pcm []int16) float64 {
	var sum float64
	for _, s := range pcm {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(len(pcm)))
}

func equal16(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkLoadWAV48k(b *testing.B) {
	var data []byte
	for i := range 48000 {
		data = binary.LittleEndian.AppendUint16(data, uint16(int16(8000*math.Sin(float64(i)/10))))
	}
	file := new(wavFile).format(wavePCM, 1, 48000, 16).chunk("data", data).bytes()
	b.SetBytes(int64(len(file)))
	for b.Loop() {
		if _, err := LoadWAV(bytes.NewReader(file)); err != nil {
			b.Fatal(err)
		}
	}
}
