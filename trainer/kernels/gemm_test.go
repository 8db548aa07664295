package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
)

// naive is the reference: float64 sums in the obvious loop order.
func naive(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				ai, bi := i*lda+p, p*ldb+j
				if transA {
					ai = p*lda + i
				}
				if transB {
					bi = j*ldb + p
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
			}
			old := float64(beta) * float64(c[i*ldc+j])
			if beta == 0 {
				old = 0
			}
			out[i*n+j] = float64(alpha)*s + old
		}
	}
	return out
}

type gemmCase struct {
	tA, tB      bool
	m, n, k     int
	pad         int // extra stride beyond the stored columns
	alpha, beta float32
}

func (g gemmCase) String() string {
	return fmt.Sprintf("tA=%v,tB=%v,%dx%dx%d,pad=%d,a=%g,b=%g", g.tA, g.tB, g.m, g.n, g.k, g.pad, g.alpha, g.beta)
}

// run multiplies random matrices with Sgemm and checks every element of
// C against float64 sums, within the bound float32 rounding obeys
// (relative to the sum of |terms|).
func (g gemmCase) run(t testing.TB, r *rand.Rand) { g.check(t, r, Sgemm, nil) }

// check is run for the product mul, whose inputs are rounded by round
// first (alpha·A and B; nil: not rounded): the reference sums the rounded
// inputs, so the rounding is the whole difference the bound allows.
func (g gemmCase) check(t testing.TB, r *rand.Rand, mul func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int), round func(float32) float32) {
	t.Helper()
	ar, ac := g.m, g.k
	if g.tA {
		ar, ac = g.k, g.m
	}
	br, bc := g.k, g.n
	if g.tB {
		br, bc = g.n, g.k
	}
	lda, ldb, ldc := max(1, ac)+g.pad, max(1, bc)+g.pad, max(1, g.n)+g.pad
	fill := func(rows, ld int) []float32 {
		s := make([]float32, max(0, rows*ld))
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
		return s
	}
	a, b, c := fill(ar, lda), fill(br, ldb), fill(g.m, ldc)
	if g.beta == 0 && len(c) > 0 {
		c[0] = float32(math.NaN()) // beta 0 must overwrite, not multiply
	}
	refA, refB, alpha := a, b, g.alpha
	if round != nil {
		refA, refB, alpha = make([]float32, len(a)), make([]float32, len(b)), 1
		for i, v := range a {
			refA[i] = round(g.alpha * v)
		}
		for i, v := range b {
			refB[i] = round(v)
		}
	}
	want := naive(g.tA, g.tB, g.m, g.n, g.k, alpha, refA, lda, refB, ldb, g.beta, c, ldc)
	// Scale for the error bound: alpha·Σ|a||b| + |beta·c|.
	absA, absB := make([]float32, len(a)), make([]float32, len(b))
	for i, v := range refA {
		absA[i] = float32(math.Abs(float64(v)))
	}
	for i, v := range refB {
		absB[i] = float32(math.Abs(float64(v)))
	}
	scale := naive(g.tA, g.tB, g.m, g.n, g.k, float32(math.Abs(float64(alpha))), absA, lda, absB, ldb, 0, c, ldc)
	guard := append([]float32(nil), c...)
	mul(g.tA, g.tB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc)
	for i := range g.m {
		for j := range ldc {
			got := c[i*ldc+j]
			if j >= g.n {
				if got != guard[i*ldc+j] && !(math.IsNaN(float64(got)) && math.IsNaN(float64(guard[i*ldc+j]))) {
					t.Fatalf("%v: wrote C[%d][%d] outside the matrix", g, i, j)
				}
				continue
			}
			w := want[i*g.n+j]
			old := 0.0
			if g.beta != 0 {
				old = math.Abs(float64(g.beta) * float64(guard[i*ldc+j]))
			}
			bound := 1e-5*(scale[i*g.n+j]+old) + 1e-30
			if d := math.Abs(float64(got) - w); !(d <= bound) {
				t.Fatalf("%v: C[%d][%d] = %g, want %g (error %g > %g)", g, i, j, got, w, d, bound)
			}
		}
	}
}

// eachKernel runs f once with every micro-kernel this CPU can execute;
// the portable kernel also packs with the portable loops (no gathers).
func eachKernel(t *testing.T, f func(t *testing.T)) {
	for _, kn := range kernels {
		t.Run(kn.name, func(t *testing.T) {
			old, oldGather := active, gatherPack
			active = kn
			if kn.name == "generic" {
				gatherPack = func([]float32, int, []float32, int, int, int, float32) bool { return false }
			}
			defer func() { active, gatherPack = old, oldGather }()
			f(t)
		})
	}
}

func TestSgemmShapes(t *testing.T) {
	dims := []int{1, 2, 3, 5, 7, 13, 17, 31, 33, 65, 97}
	eachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, m := range dims {
					for _, n := range dims {
						k := dims[r.IntN(len(dims))]
						g := gemmCase{tA: tA, tB: tB, m: m, n: n, k: k, pad: r.IntN(3), alpha: 1, beta: 1}
						g.run(t, r)
					}
				}
			}
		}
	})
}

func TestSgemmAlphaBeta(t *testing.T) {
	eachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, ab := range [][2]float32{{1, 0}, {-0.5, 0}, {2, 1}, {1, -3}, {0, 0.5}, {0, 1}} {
			gemmCase{m: 19, n: 37, k: 23, pad: 1, alpha: ab[0], beta: ab[1]}.run(t, r)
			gemmCase{tA: true, tB: true, m: 40, n: 9, k: 300, alpha: ab[0], beta: ab[1]}.run(t, r)
		}
		gemmCase{m: 5, n: 6, k: 0, alpha: 1, beta: 0.5}.run(t, r) // k=0 only scales C
		gemmCase{m: 0, n: 6, k: 4, alpha: 1, beta: 0.5}.run(t, r)
	})
}

// TestSgemmBlocks crosses every block edge (K=256, M=288) and, with
// GOMAXPROCS raised, the parallel split along either side.
func TestSgemmBlocks(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	eachKernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, g := range []gemmCase{
			{m: 300, n: 70, k: 520, alpha: 1, beta: 1},         // split along m, 3 K blocks, 2 M blocks
			{m: 61, n: 333, k: 257, pad: 3, alpha: 1, beta: 0}, // split along n
			{tA: true, m: 289, n: 290, k: 255, alpha: 1, beta: 1},
			{tB: true, m: 128, n: 512, k: 784, alpha: 1, beta: 0}, // the MLP's first layer
			{tA: true, tB: true, m: 200, n: 150, k: 600, alpha: 0.5, beta: 2},
		} {
			g.run(t, r)
		}
	})
}

// TestSgemmThreadsAgree: the split must not change a single bit.
func TestSgemmThreadsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	m, n, k := 333, 517, 300
	a, b := make([]float32, m*k), make([]float32, k*n)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	for i := range b {
		b[i] = float32(r.NormFloat64())
	}
	prod := func(procs int) []float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		c := make([]float32, m*n)
		Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		return c
	}
	one := prod(1)
	for _, p := range []int{2, 3, 5} {
		for i, v := range prod(p) {
			if v != one[i] {
				t.Fatalf("GOMAXPROCS %d: C[%d] = %x, with 1 thread %x", p, i, math.Float32bits(v), math.Float32bits(one[i]))
			}
		}
	}
}

func TestSgemmBadArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"negative m", func() { Sgemm(false, false, -1, 1, 1, 1, nil, 1, nil, 1, 0, nil, 1) }},
		{"lda", func() {
			Sgemm(false, false, 2, 2, 3, 1, make([]float32, 6), 2, make([]float32, 6), 2, 0, make([]float32, 4), 2)
		}},
		{"len(b)", func() {
			Sgemm(false, false, 2, 2, 3, 1, make([]float32, 6), 3, make([]float32, 5), 2, 0, make([]float32, 4), 2)
		}},
		{"len(c)", func() {
			Sgemm(false, true, 2, 2, 3, 1, make([]float32, 6), 3, make([]float32, 6), 3, 0, make([]float32, 3), 2)
		}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tc.name)
				}
			}()
			tc.f()
		}()
	}
}

func FuzzSgemm(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), uint8(0), uint64(1))
	f.Add(uint8(13), uint8(33), uint8(7), uint8(3), uint64(2))
	f.Add(uint8(12), uint8(32), uint8(255), uint8(1), uint64(3))
	f.Fuzz(func(t *testing.T, m, n, k, flags uint8, seed uint64) {
		r := rand.New(rand.NewPCG(seed, 9))
		g := gemmCase{tA: flags&1 != 0, tB: flags&2 != 0, m: int(m), n: int(n), k: int(k), pad: int(flags>>2) % 5,
			alpha: float32(r.IntN(5)) - 2, beta: float32(r.IntN(3)) - 1}
		for _, kn := range kernels {
			active = kn
			g.run(t, r)
		}
		active = kernels[0]
	})
}

// TestSgemmNoAlloc: a split product allocates nothing once the pool and
// workspaces are warm. (testing.AllocsPerRun would force GOMAXPROCS 1,
// which never splits.)
func TestSgemmNoAlloc(t *testing.T) {
	// No GC while counting: one emptying the workspace pool costs a
	// refill, more often on a slow (emulated) CPU.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	m, n, k := 128, 512, 784
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	f := func() { Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n) }
	for range 5 { // start the workers, fill the workspace pool
		f()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		f()
	}
	runtime.ReadMemStats(&after)
	// A GC emptying the workspace pool costs a refill (a few buffers);
	// allow that, not allocations on every product (goroutines and
	// closures cost about five).
	if allocs := after.Mallocs - before.Mallocs; allocs >= 50 {
		t.Errorf("%d allocations in 100 split products", allocs)
	}
}
