//go:build !openblas && !gonumblas

package trainer

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
	G "gorgonia.org/gorgonia"

	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// The default build: gorgonia's matrix products and the MLP's evaluation
// use trainer/kernels' sgemm (Go assembly, no cgo); every other BLAS
// routine stays gonum's. -tags openblas selects OpenBLAS instead,
// -tags gonumblas gonum's sgemm.

// BLAS names the matrix kernels this binary uses, with the micro-kernel
// chosen for this CPU.
var BLAS = "swarmtrain/" + kernels.Kernel()

// kernelsBLAS is gonum's implementation with Sgemm replaced.
type kernelsBLAS struct{ gonum.Implementation }

func (kernelsBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	kernels.Sgemm(tA != blas.NoTrans, tB != blas.NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func init() {
	G.Use(kernelsBLAS{})
	blas32.Use(kernelsBLAS{})
}
