//go:build !openblas

package trainer

// BLAS names the matrix kernels this binary uses: gonum's pure Go, the
// default, which needs no system library (build with -tags openblas for
// OpenBLAS).
const BLAS = "gonum"
