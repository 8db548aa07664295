package engine

import "math"

// The activations run over every feed-forward value of every token, so
// exp and tanh are float32 polynomials here rather than math's float64
// calls (several times slower, and exact far beyond what float32 keeps).

// geluC is √(2/π), geluA the cubic coefficient of BERT's tanh GELU.
const (
	geluC = 0.7978845608028654
	geluA = 0.044715
)

// exp32 is eˣ to within 2 ulp: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6
// Taylor polynomial of eʳ, then 2ⁿ set in the exponent bits. It is 0
// below −87.3 (no denormals) and +Inf above 88.7.
func exp32(x float32) float32 {
	switch {
	case x < -87.33:
		return 0
	case x > 88.72:
		return float32(math.Inf(1))
	case x != x:
		return x
	}
	t := x*1.442695041 + 0.5
	n := int32(t)
	if float32(n) > t {
		n--
	}
	fn := float32(n)
	r := x - fn*0.693359375 + fn*2.12194440e-4 // ln2 split: hi exact in float32
	p := 1 + r*(1+r*(0.5+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	if n > 127 { // 88.03 < x ≤ 88.72: 2¹²⁸ is not a float32, the result is
		return p * 2 * math.Float32frombits(uint32(n+126)<<23)
	}
	return p * math.Float32frombits(uint32(n+127)<<23)
}

// tanh32 is tanh(x) to within a few float32 ulp of 1 (absolute), with
// relative accuracy kept near 0 by the odd series.
func tanh32(x float32) float32 {
	switch a := abs32(x); {
	case a < 0.0625:
		x2 := x * x
		return x * (1 + x2*(-1.0/3+x2*(2.0/15+x2*(-17.0/315))))
	case a > 9:
		return float32(math.Copysign(1, float64(x)))
	}
	e := exp32(2 * x)
	return (e - 1) / (e + 1)
}

// expSum replaces x with exp(x − m) and returns the sum, for m ≥ every
// x (a softmax's shift). The vector path, where the CPU has one, sums in
// lanes, so its last bits differ from the scalar loop's.
func expSum(x []float32, m float32) float32 {
	done, s := 0, float32(0)
	if expSumVec != nil {
		done, s = expSumVec(x, m)
	}
	for i, v := range x[done:] {
		e := exp32(v - m)
		x[done+i] = e
		s += e
	}
	return s
}

// expSumVec, where the CPU has one, does a prefix of expSum's work and
// returns its length and sum.
var expSumVec func(x []float32, m float32) (int, float32)

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// geluForward sets y = x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the
// form trainer's gorgonia BERT uses, and keeps the tanh in t for the
// backward pass. y may alias neither x nor t.
func geluForward(x, t, y []float32) {
	t, y = t[:len(x)], y[:len(x)]
	if geluVec != nil {
		n := geluVec(x, t, y)
		x, t, y = x[n:], t[n:], y[n:]
	}
	for i, v := range x {
		th := tanh32(geluC * (v + geluA*v*v*v))
		t[i] = th
		y[i] = 0.5 * v * (1 + th)
	}
}

// geluVec, where the CPU has one, does a prefix of geluForward's work
// and returns its length.
var geluVec func(x, t, y []float32) int

// geluBackward turns dy, the gradient at GELU's output, into the gradient
// at its input x, in place, from the tanh values t of the forward pass.
func geluBackward(x, t, dy []float32) {
	t, dy = t[:len(x)], dy[:len(x)]
	for i, v := range x {
		th := t[i]
		d := 0.5*(1+th) + 0.5*v*(1-th*th)*geluC*(1+3*geluA*v*v)
		dy[i] *= d
	}
}
