//go:build gonumblas && !openblas

package trainer

// Built with -tags gonumblas: gonum's pure-Go kernels throughout, the
// default before trainer/kernels; kept to measure old against new.

// BLAS names the matrix kernels this binary uses.
var BLAS = "gonum"
