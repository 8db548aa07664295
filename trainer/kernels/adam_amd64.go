package kernels

import "golang.org/x/sys/cpu"

//go:noescape
func adam512(p, g, m, v []float32, k *[8]float32)

func init() {
	if cpu.X86.HasAVX512F {
		adamVec = func(p, g, m, v []float32, k *[8]float32) int {
			n := len(p) &^ 15
			adam512(p[:n], g[:n], m[:n], v[:n], k)
			return n
		}
	}
}
