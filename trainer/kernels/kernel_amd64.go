package kernels

import "golang.org/x/sys/cpu"

// Implemented in kernel_amd64.s. The slices are sized by the caller
// (gemm.go): a ≥ k·mr, b ≥ k·nr, c ≥ (mr-1)·ldc+nr.

//go:noescape
func kern12x32(k int, a, b, c []float32, ldc int)

//go:noescape
func kern6x16(k int, a, b, c []float32, ldc int)

func fmaPeak512(n int)
func fmaPeak256(n int)

// init puts the widest micro-kernel this CPU runs first. x/sys/cpu reports
// AVX-512 only when the OS also saves the zmm registers.
func init() {
	var ks []microKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, microKernel{name: "avx512", mr: 12, nr: 32, fn: kern12x32})
		peaks = append(peaks, peakLoop{name: "avx512", flops: 24 * 16 * 2, fn: fmaPeak512})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, microKernel{name: "avx2", mr: 6, nr: 16, fn: kern6x16})
		peaks = append(peaks, peakLoop{name: "avx2", flops: 12 * 8 * 2, fn: fmaPeak256})
	}
	kernels = append(ks, kernels...)
	active = kernels[0]
}
