//go:build amd64 && !purego

package compression

//go:noescape
func absMax16(src *float32, n int) (m float32, special bool)

//go:noescape
func quantize8(dst *byte, src *float32, n int, inv float32)

//go:noescape
func dequantize8(dst *float32, src *byte, n int, scale float32) (bad bool)

// absMaxFast returns the largest |x| of a prefix of xs (a multiple of 16
// values), the prefix's length, and whether the prefix held Inf or NaN.
func absMaxFast(xs []float32) (float32, int, bool) {
	n := len(xs) &^ 15
	if !useAVX2 || n == 0 {
		return 0, 0, false
	}
	m, special := absMax16(&xs[0], n)
	if special {
		// VMAXPS drops a NaN that Go's max keeps: redo the prefix the
		// portable way, so Encode gives the same bytes on every path.
		// (Non-finite input is outside Encode's contract; EncodePart
		// refuses it.)
		m = 0
		for _, x := range xs[:n] {
			m = max(m, abs32(x))
		}
	}
	return m, n, special
}

// quantize8Fast writes the int8 levels of a prefix of xs into v, exactly
// as quantLevel(x·inv, 127) does, and returns the prefix's length.
func quantize8Fast(v []byte, xs []float32, inv float32) int {
	n := len(xs) &^ 15
	if !useAVX2 || n == 0 {
		return 0
	}
	quantize8(&v[0], &xs[0], n, inv)
	return n
}

// dequantize8Fast decodes a prefix of vals (a multiple of 16) at scale
// into dst; bad reports a -128 level in it.
func dequantize8Fast(dst []float32, vals []byte, scale float32) (n int, bad bool) {
	n = len(dst) &^ 15
	if !useAVX2 || n == 0 {
		return 0, false
	}
	return n, dequantize8(&dst[0], &vals[0], n, scale)
}
