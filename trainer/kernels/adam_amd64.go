package kernels

import "golang.org/x/sys/cpu"

//go:noescape
func adam512(p, g, m, v []float32, k *[8]float32)

//go:noescape
func axpy512(dst, x []float32, a float32)

func init() {
	if cpu.X86.HasAVX512F {
		adamVec = func(p, g, m, v []float32, k *[8]float32) int {
			n := len(p) &^ 15
			adam512(p[:n], g[:n], m[:n], v[:n], k)
			return n
		}
		axpyVec = func(dst, x []float32, a float32) int {
			n := len(x) &^ 15
			axpy512(dst[:n], x[:n], a)
			return n
		}
	}
}
