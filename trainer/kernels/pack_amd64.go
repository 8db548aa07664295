package kernels

import (
	"math"

	"golang.org/x/sys/cpu"
)

//go:noescape
func gather16(dst []float32, stride int, src []float32, idx *[16]int32, kc int, mask int, alpha float32)

func init() {
	if cpu.X86.HasAVX512F {
		gatherPack = gatherPack512
	}
}

// gatherPack512 is gatherPack with AVX-512 gathers, 16 lanes per call.
func gatherPack512(dst []float32, stride int, src []float32, ld, lanes, kc int, alpha float32) bool {
	if int64(lanes)*int64(ld)*4 > math.MaxInt32 || kc == 0 {
		return false // byte offsets must fit the gather's int32 indices
	}
	var idx [16]int32
	for j := range idx {
		idx[j] = int32(j * ld * 4)
	}
	for j0 := 0; j0 < lanes; j0 += 16 {
		n := min(16, lanes-j0)
		// Bounds, which the assembly does not check.
		_ = src[(j0+n-1)*ld+kc-1]
		_ = dst[(kc-1)*stride+j0+n-1]
		gather16(dst[j0:], stride, src[j0*ld:], &idx, kc, 1<<n-1, alpha)
	}
	return true
}
