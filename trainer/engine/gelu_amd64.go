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
func expSumAVX2(x []float32, m float32, k *[11][8]float32) float32

// expConsts are exp32's constants in expSumAVX2's order.
var expConsts = func() (k [11][8]float32) {
	v := [11]float32{1.442695041, 0.5, 0.693359375, -2.12194440e-4, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1, -87.33,
		math.Float32frombits(127)}
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
	}
}
