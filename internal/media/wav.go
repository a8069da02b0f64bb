package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// RIFF WAVE, as Microsoft's "Multimedia Programming Interface and Data
// Specifications 1.0" (1991) defines it and RFC 2361 registers it: a RIFF
// header, then chunks of a four-byte id, a little-endian 32-bit size and
// the data, padded to an even length.

// WAVE format tags (RFC 2361 Appendix A).
const (
	wavePCM        = 0x0001
	waveALaw       = 0x0006
	waveMuLaw      = 0x0007
	waveExtensible = 0xFFFE
)

// maxWAVData bounds the audio LoadWAV reads: ten minutes of 48 kHz stereo
// 16-bit, far more than any prompt, so a bad header cannot exhaust memory.
const maxWAVData = 10 * 60 * 48000 * 2 * 2

// LoadWAV reads a RIFF WAVE file and returns its audio as 8 kHz mono
// 16-bit linear PCM. It accepts 16-bit PCM at any rate from 8 to 48 kHz
// (resampled to 8 kHz), and 8 kHz G.711 µ-law or A-law; stereo is averaged
// to mono. Chunks other than "fmt " and "data" (LIST, fact, cue, ...) are
// skipped. Anything else is an error that names what is not supported.
func LoadWAV(r io.Reader) ([]int16, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("wav: read header: %w", noEOF(err))
	}
	if string(hdr[0:4]) != "RIFF" {
		if string(hdr[0:4]) == "RF64" || string(hdr[0:4]) == "RIFX" {
			return nil, fmt.Errorf("wav: %q files are not supported, only little-endian RIFF", hdr[0:4])
		}
		return nil, errors.New("wav: not a RIFF file")
	}
	if string(hdr[8:12]) != "WAVE" {
		return nil, fmt.Errorf("wav: RIFF form %q is not WAVE", hdr[8:12])
	}
	var (
		f       *waveFormat
		data    []byte
		hasData bool
	)
	for {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			if errors.Is(err, io.ErrUnexpectedEOF) && hasData {
				break // a few stray bytes after the audio
			}
			return nil, fmt.Errorf("wav: read chunk header: %w", noEOF(err))
		}
		id, size := string(ch[0:4]), int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if f != nil {
				return nil, errors.New("wav: two fmt chunks")
			}
			if size < 16 || size > 1024 {
				return nil, fmt.Errorf("wav: fmt chunk of %d bytes, want 16 to 1024", size)
			}
			b := make([]byte, size)
			if _, err := io.ReadFull(r, b); err != nil {
				return nil, fmt.Errorf("wav: read fmt chunk: %w", noEOF(err))
			}
			var err error
			if f, err = parseWaveFormat(b); err != nil {
				return nil, err
			}
		case "data":
			if hasData {
				return nil, errors.New("wav: two data chunks")
			}
			hasData = true
			var err error
			// Writers that stream (and so cannot know the length) leave
			// the size at 0xFFFFFFFF: read to the end then.
			if size == 0xFFFFFFFF {
				size = maxWAVData + 1
			}
			if data, err = readChunk(r, size); err != nil {
				return nil, err
			}
		default:
			if _, err := io.CopyN(io.Discard, r, size); err != nil {
				return nil, fmt.Errorf("wav: skip %q chunk: %w", id, noEOF(err))
			}
		}
		if size%2 == 1 {
			// RIFF pads chunks to even lengths; a missing pad byte at
			// the very end is common and harmless.
			var pad [1]byte
			if _, err := io.ReadFull(r, pad[:]); err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("wav: read chunk padding: %w", err)
			}
		}
		if f != nil && hasData {
			break
		}
	}
	if f == nil {
		return nil, errors.New("wav: no fmt chunk")
	}
	if !hasData {
		return nil, errors.New("wav: no data chunk")
	}
	return f.decode(data)
}

// readChunk reads a chunk's data, tolerating files cut short (the size a
// crashed recorder wrote is often larger than what it wrote), up to
// maxWAVData.
func readChunk(r io.Reader, size int64) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(int(min(size, 64<<10)))
	n, err := io.Copy(&buf, io.LimitReader(r, min(size, maxWAVData+1)))
	if err != nil {
		return nil, fmt.Errorf("wav: read data chunk: %w", err)
	}
	if n > maxWAVData {
		return nil, fmt.Errorf("wav: more than %d bytes of audio", maxWAVData)
	}
	return buf.Bytes(), nil
}

// waveFormat is the part of a WAVEFORMATEX this package needs.
type waveFormat struct {
	tag        uint16
	channels   int
	rate       int
	blockAlign int
	bits       int
}

func parseWaveFormat(b []byte) (*waveFormat, error) {
	f := &waveFormat{
		tag:        binary.LittleEndian.Uint16(b[0:2]),
		channels:   int(binary.LittleEndian.Uint16(b[2:4])),
		rate:       int(binary.LittleEndian.Uint32(b[4:8])),
		blockAlign: int(binary.LittleEndian.Uint16(b[12:14])),
		bits:       int(binary.LittleEndian.Uint16(b[14:16])),
	}
	if f.tag == waveExtensible {
		// WAVEFORMATEXTENSIBLE: cbSize (2), valid bits (2), channel
		// mask (4), then a GUID whose first two bytes are the tag.
		if len(b) < 40 {
			return nil, errors.New("wav: WAVE_FORMAT_EXTENSIBLE fmt chunk shorter than 40 bytes")
		}
		f.tag = binary.LittleEndian.Uint16(b[24:26])
	}
	switch f.tag {
	case wavePCM:
		if f.bits != 16 {
			return nil, fmt.Errorf("wav: %d-bit PCM is not supported, only 16-bit", f.bits)
		}
		if f.rate < 8000 || f.rate > 48000 {
			return nil, fmt.Errorf("wav: sample rate %d Hz is not supported, only 8000 to 48000", f.rate)
		}
	case waveMuLaw, waveALaw:
		if f.bits != 8 {
			return nil, fmt.Errorf("wav: %d-bit G.711 is not supported, only 8-bit", f.bits)
		}
		if f.rate != SampleRate {
			return nil, fmt.Errorf("wav: G.711 at %d Hz is not supported, only 8000", f.rate)
		}
	default:
		return nil, fmt.Errorf("wav: format tag %#04x is not supported, only PCM (1), A-law (6) and µ-law (7)", f.tag)
	}
	if f.channels != 1 && f.channels != 2 {
		return nil, fmt.Errorf("wav: %d channels are not supported, only mono or stereo", f.channels)
	}
	if want := f.channels * f.bits / 8; f.blockAlign != want {
		return nil, fmt.Errorf("wav: block align %d, want %d for %d channels of %d bits", f.blockAlign, want, f.channels, f.bits)
	}
	return f, nil
}

// decode turns the data chunk into 8 kHz mono PCM. A trailing partial
// block is dropped.
func (f *waveFormat) decode(data []byte) ([]int16, error) {
	frames := len(data) / f.blockAlign
	mono := make([]int16, frames)
	for i := range mono {
		block := data[i*f.blockAlign : (i+1)*f.blockAlign]
		var sum int32
		for c := range f.channels {
			switch f.tag {
			case wavePCM:
				sum += int32(int16(binary.LittleEndian.Uint16(block[2*c:])))
			case waveMuLaw:
				sum += int32(ulawDecode[block[c]])
			case waveALaw:
				sum += int32(alawDecode[block[c]])
			}
		}
		mono[i] = int16(sum / int32(f.channels))
	}
	if f.rate == SampleRate {
		return mono, nil
	}
	return resample(mono, f.rate, SampleRate), nil
}

// noEOF turns a bare EOF in the middle of a structure into the unexpected
// EOF it is.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// WriteWAV writes pcm, mono 16-bit linear at rate Hz (8000 for the audio
// of a call), as a RIFF WAVE file.
func WriteWAV(w io.Writer, pcm []int16, rate int) error {
	if rate <= 0 {
		return fmt.Errorf("wav: sample rate %d", rate)
	}
	dataLen := 2 * len(pcm)
	if dataLen > 0xFFFFFFFF-36 {
		return fmt.Errorf("wav: %d samples do not fit a RIFF file", len(pcm))
	}
	hdr := make([]byte, 44, 44+dataLen)
	copy(hdr[0:], "RIFF")
	binary.LittleEndian.PutUint32(hdr[4:], uint32(36+dataLen))
	copy(hdr[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(hdr[16:], 16)
	binary.LittleEndian.PutUint16(hdr[20:], wavePCM)
	binary.LittleEndian.PutUint16(hdr[22:], 1)
	binary.LittleEndian.PutUint32(hdr[24:], uint32(rate))
	binary.LittleEndian.PutUint32(hdr[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(hdr[32:], 2)
	binary.LittleEndian.PutUint16(hdr[34:], 16)
	copy(hdr[36:], "data")
	binary.LittleEndian.PutUint32(hdr[40:], uint32(dataLen))
	b := hdr
	for _, s := range pcm {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("wav: write: %w", err)
	}
	return nil
}
