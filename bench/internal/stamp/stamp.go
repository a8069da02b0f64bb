// Package stamp writes and reads the mark the media benchmarks put in the
// G.711 payload of each packet they send: when it was sent, which stream
// sent it and its index in that stream. It is written with 16 G.711 codes
// that transcode exactly between µ-law and A-law (µ-law to A-law and back
// gives the same code, and decoding to linear and encoding again does
// too), so it reads back whatever a relay or an agent did to the audio on
// the way: relayed it, transcoded it, or decoded it and encoded it again.
package stamp

import "github.com/switchback/switchback/internal/media"

// Bytes is the length of a stamp: 16 nibbles of the send time in
// UnixNano, 8 of the stream and 8 of the index, one code each. The rest
// of a payload is filled with the code of nibble 0.
const Bytes = 32

var (
	codes  [3][16]byte  // [codec][nibble]
	values [3][256]byte // [codec][code]: the nibble, or 0xFF
)

func init() {
	for c := range values {
		for i := range values[c] {
			values[c][i] = 0xFF
		}
	}
	n := 0
	var u, a, back [1]byte
	var pcm [1]int16
	// Loud codes first (µ-law 0x10-0x1F, a segment where A-law has the
	// same step): their linear values are ones both laws can code, so any
	// relay's G.711 tables, which agree on them, carry them exactly.
	for code := 0x10; code < 0x80 && n < 16; code++ {
		u[0] = byte(code)
		media.ULawToALaw(a[:], u[:])
		media.ALawToULaw(back[:], a[:])
		if back[0] != u[0] || values[media.PCMA][a[0]] != 0xFF {
			continue
		}
		media.DecodeULaw(pcm[:], u[:])
		media.EncodeULaw(back[:], pcm[:])
		if back[0] != u[0] {
			continue
		}
		codes[media.PCMU][n], codes[media.PCMA][n] = u[0], a[0]
		values[media.PCMU][u[0]], values[media.PCMA][a[0]] = byte(n), byte(n)
		n++
	}
	if n < 16 {
		panic("fewer than 16 G.711 codes transcode exactly")
	}
}

// Write stamps p, a payload in codec of at least Bytes bytes, with the
// send time (UnixNano), the stream and the index, and fills the rest.
func Write(p []byte, codec media.Codec, sent int64, stream, idx uint32) {
	c := &codes[codec]
	for i := range 16 {
		p[i] = c[uint64(sent)>>(60-4*i)&0xF]
	}
	for i := range 8 {
		p[16+i] = c[stream>>(28-4*i)&0xF]
		p[24+i] = c[idx>>(28-4*i)&0xF]
	}
	for i := Bytes; i < len(p); i++ {
		p[i] = c[0]
	}
}

// Read reads the stamp of p, a payload in codec; ok is false when p
// holds none (silence, say).
func Read(p []byte, codec media.Codec) (sent int64, stream, idx uint32, ok bool) {
	if len(p) < Bytes {
		return 0, 0, 0, false
	}
	v := &values[codec]
	var s uint64
	for i := range 16 {
		x := v[p[i]]
		if x > 0xF {
			return 0, 0, 0, false
		}
		s = s<<4 | uint64(x)
	}
	for i := range 8 {
		x, y := v[p[16+i]], v[p[24+i]]
		if x > 0xF || y > 0xF {
			return 0, 0, 0, false
		}
		stream = stream<<4 | uint32(x)
		idx = idx<<4 | uint32(y)
	}
	return int64(s), stream, idx, true
}
