package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkFMAPeak is the ceiling GEMM efficiency is measured against.
// Run with -cpu 1.
func BenchmarkFMAPeak(b *testing.B) {
	for _, p := range peaks {
		b.Run(p.name, func(b *testing.B) {
			p.fn(1 << 10)
			b.ResetTimer()
			best := time.Duration(math.MaxInt64)
			for b.Loop() {
				start := time.Now()
				p.fn(1 << 16)
				best = min(best, time.Since(start))
			}
			flops := float64(1<<16) * float64(p.flops)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/best.Seconds()/1e9, "best-GFLOP/s")
		})
	}
}

// gemmShapes are 1024³ and the products of the MLP 784-512-256-10 at batch
// 128 (forward, input gradient, weight gradient) and BERT's widest.
var gemmShapes = []struct {
	name    string
	tA, tB  bool
	m, n, k int
}{
	{"square1024", false, false, 1024, 1024, 1024},
	{"mlp-fwd-128x784x512", false, false, 128, 512, 784},
	{"mlp-dx-128x512x784", false, true, 128, 784, 512},
	{"mlp-dw-784x128x512", true, false, 784, 512, 128},
	{"mlp-fwd2-128x512x256", false, false, 128, 256, 512},
	{"bert-ff-2048x64x256", false, false, 2048, 256, 64},
}

// BenchmarkSgemm reports GFLOP/s and, for the active kernel, the share of
// the FMA peak measured in the same run. -cpu 1 for the single-core figure.
func BenchmarkSgemm(b *testing.B) {
	peak, _ := Peak(100 * time.Millisecond)
	for _, s := range gemmShapes {
		b.Run(s.name, func(b *testing.B) {
			benchGemm(b, Sgemm, s.tA, s.tB, s.m, s.n, s.k, peak)
		})
	}
}

// BenchmarkSgemmBF16 is BenchmarkSgemm for bf16 inputs; %peak is against
// the fp32 FMA peak (a bf16 dot product does twice its multiply-adds).
func BenchmarkSgemmBF16(b *testing.B) {
	if !HasBF16() {
		b.Skip("no AVX512_BF16 on this CPU")
	}
	peak, _ := Peak(100 * time.Millisecond)
	for _, s := range gemmShapes {
		b.Run(s.name, func(b *testing.B) {
			benchGemm(b, SgemmBF16, s.tA, s.tB, s.m, s.n, s.k, peak)
		})
	}
}

func benchGemm(b *testing.B, gemm func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int), tA, tB bool, m, n, k int, peak float64) {
	r := rand.New(rand.NewPCG(1, 1))
	a, bb, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := range a {
		a[i] = r.Float32()
	}
	for i := range bb {
		bb[i] = r.Float32()
	}
	lda, ldb := k, n
	if tA {
		lda = m
	}
	if tB {
		ldb = k
	}
	best := time.Duration(math.MaxInt64)
	for b.Loop() {
		start := time.Now()
		gemm(tA, tB, m, n, k, 1, a, lda, bb, ldb, 0, c, n)
		best = min(best, time.Since(start))
	}
	flops := 2 * float64(m*n*k)
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	// On a shared machine others' load only slows a call down, so the
	// fastest call is the kernel's own speed; compare it with the peak,
	// which Peak measures the same way.
	g := flops / best.Seconds() / 1e9
	b.ReportMetric(g, "best-GFLOP/s")
	if peak > 0 {
		b.ReportMetric(100*g/peak, "%peak")
	}
}

func ExampleSgemm() {
	// C (2×2) = A (2×3) · B (3×2)
	a := []float32{1, 2, 3, 4, 5, 6}
	b := []float32{1, 0, 0, 1, 1, 1}
	c := make([]float32, 4)
	Sgemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2)
	fmt.Println(c)
	// Output: [4 5 10 11]
}
