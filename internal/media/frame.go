package media

import "time"

// The audio this package hands out and takes in is 8 kHz mono 16-bit
// linear PCM, G.711's rate (RFC 3551 §4.5.14), in frames of 20 ms, the
// default packet time of the audio/video profile (RFC 3551 §4.2).
const (
	// SampleRate is the rate of the PCM, in Hz, and of the RTP clock.
	SampleRate = 8000
	// FrameSamples is the number of samples in a 20 ms frame, and the
	// RTP timestamp increment from one packet to the next.
	FrameSamples = SampleRate * frameMillis / 1000
)

const (
	frameMillis   = 20
	frameDuration = frameMillis * time.Millisecond
)
