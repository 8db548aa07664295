package trainer

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// BenchmarkSgemm times the sgemm this build uses (blas32's, which the
// BLAS files set: trainer/kernels by default, OpenBLAS with -tags
// openblas, gonum with -tags gonumblas) on the MLP's and BERT's products
// and 1024³, so that builds compare side by side:
//
//	go test ./trainer/ -run '^$' -bench Sgemm -cpu 1,2
//	LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=1 \
//	  go test -tags openblas ./trainer/ -run '^$' -bench Sgemm -cpu 1
func BenchmarkSgemm(b *testing.B) {
	for _, s := range []struct {
		name    string
		tA, tB  bool
		m, n, k int
	}{
		{"square1024", false, false, 1024, 1024, 1024},
		{"mlp-fwd-128x512x784", false, false, 128, 512, 784},
		{"mlp-dx-128x784x512", false, true, 128, 784, 512},
		{"mlp-dw-784x512x128", true, false, 784, 512, 128},
		{"mlp-fwd2-128x256x512", false, false, 128, 256, 512},
		{"mlp-dw2-512x256x128", true, false, 512, 256, 128},
		{"bert-qkv-2048x64x64", false, false, 2048, 64, 64},
		{"bert-ff-2048x256x64", false, false, 2048, 256, 64},
		{"bert-mlm-256x2000x64", false, true, 256, 2000, 64},
	} {
		b.Run(s.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 1))
			fill := func(n int) []float32 {
				v := make([]float32, n)
				for i := range v {
					v[i] = r.Float32()
				}
				return v
			}
			ta, tb := blas.NoTrans, blas.NoTrans
			ar, ac, br, bc := s.m, s.k, s.k, s.n
			if s.tA {
				ta, ar, ac = blas.Trans, s.k, s.m
			}
			if s.tB {
				tb, br, bc = blas.Trans, s.n, s.k
			}
			a := blas32.General{Rows: ar, Cols: ac, Stride: ac, Data: fill(ar * ac)}
			bm := blas32.General{Rows: br, Cols: bc, Stride: bc, Data: fill(br * bc)}
			c := blas32.General{Rows: s.m, Cols: s.n, Stride: s.n, Data: make([]float32, s.m*s.n)}
			best := time.Duration(math.MaxInt64)
			for b.Loop() {
				start := time.Now()
				blas32.Gemm(ta, tb, 1, a, bm, 0, c)
				best = min(best, time.Since(start))
			}
			flops := 2 * float64(s.m*s.n*s.k)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			// The fastest call: what the kernel does when nobody else runs.
			b.ReportMetric(flops/best.Seconds()/1e9, "best-GFLOP/s")
		})
	}
}
