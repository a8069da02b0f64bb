package stamp

import (
	"testing"

	"github.com/switchback/switchback/internal/media"
)

// TestStampSurvivesTheAudioPath checks a payload's stamp reads back as it
// was written: as sent, transcoded either way, and decoded to linear PCM
// and encoded again (what a streaming agent's path does).
func TestStampSurvivesTheAudioPath(t *testing.T) {
	const sent, stream, idx = int64(1795291269570089123), uint32(0x01234567), uint32(0xDEADBEEF)
	for _, tc := range []struct {
		name     string
		from, to media.Codec
		recode   bool
	}{
		{"PCMU", media.PCMU, media.PCMU, false},
		{"PCMA", media.PCMA, media.PCMA, false},
		{"PCMU to PCMA", media.PCMU, media.PCMA, false},
		{"PCMA to PCMU", media.PCMA, media.PCMU, false},
		{"PCMU decoded and encoded", media.PCMU, media.PCMU, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, media.FrameSamples)
			Write(p, tc.from, sent, stream, idx)
			switch {
			case tc.recode:
				pcm := make([]int16, len(p))
				media.DecodeULaw(pcm, p)
				media.EncodeULaw(p, pcm)
			case tc.from == media.PCMU && tc.to == media.PCMA:
				media.ULawToALaw(p, p)
			case tc.from == media.PCMA && tc.to == media.PCMU:
				media.ALawToULaw(p, p)
			}
			s, st, i, ok := Read(p, tc.to)
			if !ok || s != sent || st != stream || i != idx {
				t.Errorf("read %d, %#x, %#x, %v; want %d, %#x, %#x", s, st, i, ok, sent, stream, idx)
			}
		})
	}
	silence := make([]byte, media.FrameSamples)
	for i := range silence {
		silence[i] = 0xFF // µ-law silence
	}
	if _, _, _, ok := Read(silence, media.PCMU); ok {
		t.Error("a stamp read from silence")
	}
	if _, _, _, ok := Read(silence[:Bytes-1], media.PCMU); ok {
		t.Error("a stamp read from a short payload")
	}
}
