package kernels

// microKernel computes C[mr×nr] += Ã·B̃ for k packed steps: Ã holds mr
// values of op(A)'s column per step, B̃ nr values of op(B)'s row (pack.go).
type microKernel struct {
	name   string
	mr, nr int
	fn     func(k int, a, b, c []float32, ldc int)
}

// peakLoop runs n rounds of independent FMAs worth flops each: the core's
// arithmetic ceiling, against which GEMM efficiency is reported.
type peakLoop struct {
	name  string
	flops int
	fn    func(n int)
}

var (
	// kernels lists the micro-kernels this CPU can run, fastest first; the
	// portable one is always last.
	kernels = []microKernel{{name: "generic", mr: 4, nr: 4, fn: kernGeneric}}
	// active is the kernel Sgemm uses: kernels[0] unless a test chose.
	active = kernels[0]
	// peaks are the FMA-throughput loops this CPU can run, widest first.
	peaks []peakLoop
)

// Kernel names the micro-kernel Sgemm uses on this CPU: "avx512", "avx2"
// or "generic".
func Kernel() string { return active.name }
