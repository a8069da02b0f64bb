package media

// G.711 (ITU-T G.711, 11/1988) companding. The tables are built once, at
// package initialisation, from the reference algorithms of the ITU-T
// Software Tool Library (G.191, module g711), which take a 16-bit linear
// sample and look only at its top 14 bits (µ-law) or 13 bits (A-law): the
// encoders index their tables with exactly those bits.

var (
	ulawEncode [1 << 14]byte // indexed by uint16(sample) >> 2
	alawEncode [1 << 12]byte // indexed by uint16(sample) >> 4
	ulawDecode [256]int16
	alawDecode [256]int16
	ulawToAlaw [256]byte
	alawToUlaw [256]byte
	// A frame of silence, in each law.
	ulawSilence, alawSilence [FrameSamples]byte
)

func init() {
	for i := range ulawEncode {
		ulawEncode[i] = ulawCompress(int16(uint16(i) << 2))
	}
	for i := range alawEncode {
		alawEncode[i] = alawCompress(int16(uint16(i) << 4))
	}
	for i := range 256 {
		ulawDecode[i] = ulawExpand(byte(i))
		alawDecode[i] = alawExpand(byte(i))
	}
	for i := range 256 {
		ulawToAlaw[i] = LinearToALaw(ulawDecode[i])
		alawToUlaw[i] = LinearToULaw(alawDecode[i])
	}
	for i := range FrameSamples {
		ulawSilence[i], alawSilence[i] = LinearToULaw(0), LinearToALaw(0)
	}
}

// ulawCompress is G.191's ulaw_compress for one sample: G.711 Table 2a,
// a 14-bit magnitude biased by 33, eight segments, bits inverted.
func ulawCompress(x int16) byte {
	var abs int32
	if x < 0 {
		abs = int32(^x)>>2 + 33
	} else {
		abs = int32(x)>>2 + 33
	}
	if abs > 0x1FFF {
		abs = 0x1FFF
	}
	seg := int32(1)
	for i := abs >> 6; i != 0; i >>= 1 {
		seg++
	}
	high := 8 - seg
	low := 0xF - (abs>>seg)&0xF
	b := byte(high<<4 | low)
	if x >= 0 {
		b |= 0x80
	}
	return b
}

// ulawExpand is G.191's ulaw_expand: the decision value in the middle of
// the code's quantisation interval.
func ulawExpand(b byte) int16 {
	sign := int32(1)
	if b < 0x80 {
		sign = -1
	}
	m := int32(^b)
	exp := (m >> 4) & 7
	m &= 0xF
	step := int32(4) << (exp + 1)
	return int16(sign * ((0x80 << exp) + step*m + step/2 - 4*33))
}

// alawCompress is G.191's alaw_compress: G.711 Table 1a, a 12-bit
// magnitude, eight segments, even bits inverted (XOR 0x55).
func alawCompress(x int16) byte {
	var ix int32
	if x < 0 {
		ix = int32(^x) >> 4
	} else {
		ix = int32(x) >> 4
	}
	if ix > 15 {
		exp := int32(1)
		for ix > 16+15 {
			ix >>= 1
			exp++
		}
		ix -= 16
		ix += exp << 4
	}
	if x >= 0 {
		ix |= 0x80
	}
	return byte(ix) ^ 0x55
}

// alawExpand is G.191's alaw_expand.
func alawExpand(b byte) int16 {
	ix := int32(b^0x55) & 0x7F
	exp := ix >> 4
	m := ix & 0xF
	if exp > 0 {
		m += 16
	}
	m = m<<4 + 8
	if exp > 1 {
		m <<= exp - 1
	}
	if b > 127 {
		return int16(m)
	}
	return int16(-m)
}

// LinearToULaw encodes one 16-bit linear sample as G.711 µ-law.
func LinearToULaw(s int16) byte { return ulawEncode[uint16(s)>>2] }

// ULawToLinear decodes one G.711 µ-law byte to 16-bit linear.
func ULawToLinear(b byte) int16 { return ulawDecode[b] }

// LinearToALaw encodes one 16-bit linear sample as G.711 A-law.
func LinearToALaw(s int16) byte { return alawEncode[uint16(s)>>4] }

// ALawToLinear decodes one G.711 A-law byte to 16-bit linear.
func ALawToLinear(b byte) int16 { return alawDecode[b] }

// EncodeULaw encodes src as G.711 µ-law into dst and returns the number of
// samples encoded, min(len(dst), len(src)). It does not allocate.
func EncodeULaw(dst []byte, src []int16) int {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, s := range src {
		dst[i] = ulawEncode[uint16(s)>>2]
	}
	return n
}

// DecodeULaw decodes G.711 µ-law src into dst and returns the number of
// samples decoded, min(len(dst), len(src)). It does not allocate.
func DecodeULaw(dst []int16, src []byte) int {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, b := range src {
		dst[i] = ulawDecode[b]
	}
	return n
}

// EncodeALaw encodes src as G.711 A-law into dst and returns the number of
// samples encoded, min(len(dst), len(src)). It does not allocate.
func EncodeALaw(dst []byte, src []int16) int {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, s := range src {
		dst[i] = alawEncode[uint16(s)>>4]
	}
	return n
}

// DecodeALaw decodes G.711 A-law src into dst and returns the number of
// samples decoded, min(len(dst), len(src)). It does not allocate.
func DecodeALaw(dst []int16, src []byte) int {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, b := range src {
		dst[i] = alawDecode[b]
	}
	return n
}

// ULawToALaw transcodes µ-law src to A-law dst (PCMU to PCMA) without going
// through a linear buffer, and returns min(len(dst), len(src)). Each code
// maps to the A-law code of its decoded value.
func ULawToALaw(dst, src []byte) int {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, b := range src {
		dst[i] = ulawToAlaw[b]
	}
	return n
}

// ALawToULaw transcodes A-law src to µ-law dst (PCMA to PCMU), and returns
// min(len(dst), len(src)).
func ALawToULaw(dst, src []byte) int {
	n := min(len(dst), len(src))
	dst, src = dst[:n], src[:n]
	for i, b := range src {
		dst[i] = alawToUlaw[b]
	}
	return n
}

// Codec is an audio encoding a Session sends and receives: G.711 µ-law
// (PCMU) or A-law (PCMA), 8 kHz mono (RFC 3551 §4.5.14).
type Codec uint8

// The codecs Switchback speaks. The zero Codec is none.
const (
	PCMU Codec = iota + 1
	PCMA
)

// String returns the codec's RTP encoding name (RFC 3551 Table 4).
func (c Codec) String() string {
	switch c {
	case PCMU:
		return "PCMU"
	case PCMA:
		return "PCMA"
	}
	return "unknown"
}

// PayloadType returns the codec's static RTP payload type (RFC 3551 §6).
func (c Codec) PayloadType() uint8 {
	if c == PCMA {
		return 8
	}
	return 0
}

// Encode encodes src into dst with the codec; see EncodeULaw.
func (c Codec) Encode(dst []byte, src []int16) int {
	if c == PCMA {
		return EncodeALaw(dst, src)
	}
	return EncodeULaw(dst, src)
}

// silence returns a frame of the codec's silence: linear 0 encoded, 0xFF
// in µ-law and 0xD5 in A-law (ITU-T G.711 Tables 1 and 2).
func (c Codec) silence() *[FrameSamples]byte {
	if c == PCMA {
		return &alawSilence
	}
	return &ulawSilence
}

// Decode decodes src into dst with the codec; see DecodeULaw.
func (c Codec) Decode(dst []int16, src []byte) int {
	if c == PCMA {
		return DecodeALaw(dst, src)
	}
	return DecodeULaw(dst, src)
}
