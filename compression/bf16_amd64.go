//go:build amd64 && !purego

package compression

import "golang.org/x/sys/cpu"

// useAVX2 picks the AVX2 bf16 loops (16 values an iteration).
var useAVX2 = cpu.X86.HasAVX2

//go:noescape
func bf16FromFloats(dst *byte, src *float32, n int) (special bool)

//go:noescape
func floatsFromBF16(dst *float32, src *byte, n int) (special bool)

// encodeBF16Fast converts a prefix of src (a multiple of 16 values) into
// out, bit for bit as bf16(), and returns its length and whether it held
// Inf or NaN.
func encodeBF16Fast(out []byte, src []float32) (int, bool) {
	n := len(src) &^ 15
	if !useAVX2 || n == 0 {
		return 0, false
	}
	return n, bf16FromFloats(&out[0], &src[0], n)
}

// decodeBF16Fast widens a prefix of src (a multiple of 16 values) and
// reports whether it decoded to Inf or NaN anywhere.
func decodeBF16Fast(dst []float32, src []byte) (int, bool) {
	n := len(dst) &^ 15
	if !useAVX2 || n == 0 {
		return 0, false
	}
	return n, floatsFromBF16(&dst[0], &src[0], n)
}
