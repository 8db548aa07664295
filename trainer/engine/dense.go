package engine

import "github.com/swarmtrain/swarmtrain/trainer/kernels"

// gemm is a matrix product with kernels.Sgemm's arguments: Sgemm itself,
// or kernels.SgemmBF16 for a layer in bf16.
type gemm func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// denseForward sets y[rows×out] = x[rows×in]·w[in×out] + b, then ReLU if
// relu: the bias and activation fused into one pass over y.
func denseForward(x, w, b, y []float32, rows, in, out int, relu bool) {
	denseForwardWith(kernels.Sgemm, x, w, b, y, rows, in, out, relu)
}

// denseForwardWith is denseForward with its matrix product given.
func denseForwardWith(mul gemm, x, w, b, y []float32, rows, in, out int, relu bool) {
	for r := range rows {
		copy(y[r*out:(r+1)*out], b)
	}
	mul(false, false, rows, out, in, 1, x, in, w, out, 1, y, out)
	if relu {
		for i, v := range y[:rows*out] {
			if v < 0 {
				y[i] = 0
			}
		}
	}
}

// denseBackward takes dy, the loss gradient at the layer's output (after
// ReLU if relu, in which case y, the output, masks it in place), and sets
// dw = xᵀ·dy, db = Σ rows of dy and, if dx is not nil, dx = dy·wᵀ.
func denseBackward(x, w, y, dy, dw, db, dx []float32, rows, in, out int, relu bool) {
	denseBackwardWith(kernels.Sgemm, x, w, y, dy, dw, db, dx, rows, in, out, relu)
}

// denseBackwardWith is denseBackward with its matrix products given.
func denseBackwardWith(mul gemm, x, w, y, dy, dw, db, dx []float32, rows, in, out int, relu bool) {
	if relu {
		for i, v := range y[:rows*out] {
			if v <= 0 { // ReLU's derivative at 0 is taken as 0, as gorgonia does
				dy[i] = 0
			}
		}
	}
	mul(true, false, in, out, rows, 1, x, in, dy, out, 0, dw, out)
	clear(db[:out])
	for r := range rows {
		for j, v := range dy[r*out : (r+1)*out] {
			db[j] += v
		}
	}
	if dx != nil {
		mul(false, true, rows, in, out, 1, dy, out, w, out, 0, dx, in)
	}
}
