package kernels

import (
	"math"

	"golang.org/x/sys/cpu"
)

//go:noescape
func pairRows(dst []uint32, r0, r1 []float32, n int)

//go:noescape
func pairGather16(dst []uint32, stride int, src []float32, idx *[16]int32, kp int, mask int)

func init() {
	if cpu.X86.HasAVX512F {
		pairRowsFn = pairRows512
		pairGatherFn = pairGather512
	}
}

// pairRows512 is pairRowsFn in AVX-512; the bounds are checked here, as
// the assembly does not.
func pairRows512(dst []uint32, r0, r1 []float32, n int) {
	_, _, _ = dst[:n], r0[:n], r1[:n]
	pairRows(dst, r0, r1, n)
}

// pairGather512 is pairGatherFn with AVX-512 gathers, 16 lanes a call.
func pairGather512(dst []uint32, stride int, src []float32, ld, lanes, kp int) bool {
	if int64(lanes)*int64(ld)*4 > math.MaxInt32 || kp == 0 {
		return false // byte offsets must fit the gather's int32 indices
	}
	var idx [16]int32
	for j := range idx {
		idx[j] = int32(j * ld * 4)
	}
	for j0 := 0; j0 < lanes; j0 += 16 {
		n := min(16, lanes-j0)
		_ = src[(j0+n-1)*ld+2*kp-1]
		_ = dst[(kp-1)*stride+j0+n-1]
		pairGather16(dst[j0:], stride, src[j0*ld:], &idx, kp, 1<<n-1)
	}
	return true
}
