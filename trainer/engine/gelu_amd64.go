package engine

import (
	"math"

	"golang.org/x/sys/cpu"
)

// expSumAVX2 replaces the first len(x)/8·8 values with exp(x − m) and
// returns their sum; every x − m must be ≤ 0 (a softmax's shift), and
// below −87.33 the result is 0. k holds the constants, 8 lanes each.
//
//go:noescape
func expSumAVX2(x []float32, m float32, k *[15][8]float32) float32

// geluAVX2 is geluForward on the first len(x)/8·8 values (t and y as
// long as x), with tanh(u) = (e−1)/(e+1), e = exp(2u), 2u clamped to
// ±18 where tanh is ±1 in float32.
//
//go:noescape
func geluAVX2(x, t, y []float32, k *[15][8]float32)

// expConsts are the constants of both loops, 8 lanes each: exp32's, then
// GELU's 2√(2/π), 2√(2/π)·0.044715 and the clamp of 2u.
var expConsts = func() (k [15][8]float32) {
	v := [15]float32{1.442695041, 0.5, 0.693359375, -2.12194440e-4, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1, -87.33,
		math.Float32frombits(127), 2 * geluC, 2 * geluC * geluA, 18, -18}
	for i, c := range v {
		for j := range k[i] {
			k[i][j] = c
		}
	}
	return k
}()

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		expSumVec = func(x []float32, m float32) (int, float32) {
			n := len(x) &^ 7
			if n == 0 {
				return 0, 0
			}
			return n, expSumAVX2(x[:n], m, &expConsts)
		}
		geluVec = func(x, t, y []float32) int {
			n := len(x) &^ 7
			if n > 0 {
				geluAVX2(x[:n], t[:n], y[:n], &expConsts)
			}
			return n
		}
	}
}
