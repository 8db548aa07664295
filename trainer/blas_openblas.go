//go:build openblas

package trainer

// Built with -tags openblas: gorgonia's matrix products and the MLP's
// evaluation go through OpenBLAS (cgo, via gonum's netlib binding) instead
// of gonum's pure-Go kernels. Needs the library and its headers
// (Debian: apt install libopenblas-dev); the cgo line below links it.

// #cgo LDFLAGS: -lopenblas
import "C"

import (
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/netlib/blas/netlib"
	G "gorgonia.org/gorgonia"
)

// BLAS names the matrix kernels this binary uses.
var BLAS = "openblas"

func init() {
	G.Use(netlib.Implementation{})
	blas32.Use(netlib.Implementation{})
	blas64.Use(netlib.Implementation{})
}
