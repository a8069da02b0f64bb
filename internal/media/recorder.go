package media

import (
	"context"
	"io"
	"sync"
)

// Recorder keeps the audio a Session receives, for the test softphone to
// save as a WAV file. It is safe for concurrent use.
type Recorder struct {
	mu  sync.Mutex
	pcm []int16
}

// Write appends a copy of frame.
func (r *Recorder) Write(frame []int16) {
	r.mu.Lock()
	r.pcm = append(r.pcm, frame...)
	r.mu.Unlock()
}

// Record appends every frame from frames (a Session's Audio) until the
// channel closes or ctx ends.
func (r *Recorder) Record(ctx context.Context, frames <-chan []int16) {
	for {
		select {
		case <-ctx.Done():
			return
		case f, ok := <-frames:
			if !ok {
				return
			}
			r.Write(f)
		}
	}
}

// PCM returns a copy of what was recorded, 8 kHz mono linear PCM.
func (r *Recorder) PCM() []int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int16(nil), r.pcm...)
}

// WriteWAV writes what was recorded as an 8 kHz 16-bit mono WAV file.
func (r *Recorder) WriteWAV(w io.Writer) error {
	return WriteWAV(w, r.PCM(), SampleRate)
}
