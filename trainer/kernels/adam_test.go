package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAdamStepBits: the vector path gives the scalar path's bits, on
// ordinary, tiny (subnormal), zero and large values and every tail length.
func TestAdamStepBits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{0, 1, 15, 16, 17, 33, 1000, 4099} {
		for _, scale := range []float64{1, 1e-20, 1e-40, 1e20} {
			p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
			for i := range n {
				p[i] = float32(r.NormFloat64())
				g[i] = float32(r.NormFloat64() * scale)
				m[i] = float32(r.NormFloat64() * scale)
				v[i] = float32(math.Abs(r.NormFloat64()) * scale * scale)
				if i%7 == 0 {
					g[i], m[i], v[i] = 0, 0, 0
				}
			}
			p2, m2, v2 := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
			for _, decay := range []float32{1, 0.9999} {
				AdamStep(p, g, m, v, 0.9, 0.1, 0.999, 0.001, 0.3, 1e-8, decay, 1e-3)
				adamGo(p2, g, m2, v2, &[8]float32{0.9, 0.1, 0.999, 0.001, 0.3, 1e-8, decay, 1e-3})
				for i := range n {
					if math.Float32bits(p[i]) != math.Float32bits(p2[i]) || math.Float32bits(m[i]) != math.Float32bits(m2[i]) || math.Float32bits(v[i]) != math.Float32bits(v2[i]) {
						t.Fatalf("n=%d scale=%g decay=%g i=%d: vector p,m,v = %g,%g,%g, scalar %g,%g,%g", n, scale, decay, i, p[i], m[i], v[i], p2[i], m2[i], v2[i])
					}
				}
			}
		}
	}
}

// TestAxpyBits: the vector path gives the scalar path's bits.
func TestAxpyBits(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, n := range []int{0, 1, 15, 16, 17, 100, 1027} {
		x, d1 := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], d1[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		d2 := append([]float32(nil), d1...)
		for _, a := range []float32{1, 0.3, -1e-30} {
			Axpy(d1, x, a)
			axpyGo(d2, x, a)
			for i := range n {
				if math.Float32bits(d1[i]) != math.Float32bits(d2[i]) {
					t.Fatalf("n=%d a=%g i=%d: %g, scalar %g", n, a, i, d1[i], d2[i])
				}
			}
		}
	}
}
