package media

import "math"

// Resampling by band-limited interpolation (J. O. Smith, "Digital Audio
// Resampling Home Page", CCRMA): each output sample is the input convolved
// with a windowed sinc low-pass centred on the output's instant, so one
// filter both removes what would alias above the new Nyquist frequency and
// interpolates between input samples, for any ratio of rates.

const (
	// sincZeros is how many zero crossings of the sinc the kernel keeps
	// on each side; with the Blackman window it makes a transition band
	// of about ±400 Hz around the cutoff and a stopband below -70 dB.
	sincZeros = 24
	// sincSteps is the kernel table's resolution per zero crossing;
	// between entries the kernel is interpolated linearly.
	sincSteps = 128
	// cutoffRatio places the low-pass at 45% of the lower rate: 3.6 kHz
	// for 8 kHz output, so the stopband starts at its 4 kHz Nyquist.
	cutoffRatio = 0.45
	// maxPhases bounds the polyphase tables: rates whose ratio has more
	// distinct phases than this get their weights computed per sample.
	maxPhases = 512
)

// sincTable holds the Blackman-windowed sinc kernel from 0 to sincZeros
// zero crossings.
var sincTable = func() []float64 {
	t := make([]float64, sincZeros*sincSteps+2)
	for i := range t {
		u := float64(i) / sincSteps
		if u >= sincZeros {
			break
		}
		x := u / sincZeros
		w := 0.42 + 0.5*math.Cos(math.Pi*x) + 0.08*math.Cos(2*math.Pi*x)
		s := 1.0
		if u != 0 {
			s = math.Sin(math.Pi*u) / (math.Pi * u)
		}
		t[i] = s * w
	}
	return t
}()

// kernel returns the windowed sinc at u zero crossings from its centre.
func kernel(u float64) float64 {
	u = math.Abs(u) * sincSteps
	i := int(u)
	if i >= sincZeros*sincSteps {
		return 0
	}
	f := u - float64(i)
	return sincTable[i]*(1-f) + sincTable[i+1]*f
}

// resample converts in from inRate to outRate Hz.
func resample(in []int16, inRate, outRate int) []int16 {
	n := int(int64(len(in)) * int64(outRate) / int64(inRate))
	out := make([]int16, n)
	if n == 0 {
		return out
	}
	// fc is the cutoff in cycles per input sample; the sinc for it
	// crosses zero every 1/(2fc) input samples.
	fc := cutoffRatio * float64(min(inRate, outRate)) / float64(inRate)
	scale := 2 * fc
	half := int(math.Ceil(sincZeros/scale)) + 1

	// Output j sits at input position j*inRate/outRate: an integer part
	// and one of phases fractional parts, which repeat.
	g := gcd(inRate, outRate)
	phases := outRate / g
	var table [][]float64
	if phases <= maxPhases {
		table = make([][]float64, phases)
		for p := range table {
			table[p] = weights(nil, float64(p*g)/float64(outRate), half, scale)
		}
	}
	var scratch []float64
	for j := range out {
		pos := int64(j) * int64(inRate)
		base := int(pos / int64(outRate))
		rem := int(pos % int64(outRate))
		var w []float64
		if table != nil {
			w = table[rem/g]
		} else {
			scratch = weights(scratch[:0], float64(rem)/float64(outRate), half, scale)
			w = scratch
		}
		var sum float64
		for i, wi := range w {
			k := base - half + 1 + i
			if k < 0 || k >= len(in) {
				continue
			}
			sum += float64(in[k]) * wi
		}
		out[j] = clamp16(sum)
	}
	return out
}

// weights appends the filter taps for an output frac input samples past
// an input sample, covering inputs -half+1 .. half around it.
func weights(w []float64, frac float64, half int, scale float64) []float64 {
	for d := -half + 1; d <= half; d++ {
		w = append(w, scale*kernel((frac-float64(d))*scale))
	}
	return w
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func clamp16(v float64) int16 {
	v = math.Round(v)
	if v > math.MaxInt16 {
		return math.MaxInt16
	}
	if v < math.MinInt16 {
		return math.MinInt16
	}
	return int16(v)
}
