package kernels

// Axpy adds a·x into dst (of x's length), rounding each product to
// float32 before the add, never fused, so that every architecture and
// the vector path produce the same bits.
func Axpy(dst, x []float32, a float32) {
	dst = dst[:len(x)]
	done := 0
	if axpyVec != nil {
		done = axpyVec(dst, x, a)
	}
	axpyGo(dst[done:], x[done:], a)
}

// axpyVec, where the CPU has one, handles a prefix and returns its length.
var axpyVec func(dst, x []float32, a float32) int

func axpyGo(dst, x []float32, a float32) {
	x = x[:len(dst)]
	for i, v := range x {
		dst[i] += float32(a * v)
	}
}
