package kernels

import (
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestToBF16(t *testing.T) {
	for _, tc := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // halfway, even below: down
		{0x3f818000, 0x3f82}, // halfway, odd below: up
		{0x3f808001, 0x3f81}, // above halfway: up
		{0xbf7fffff, 0xbf80}, // rounds up into the next binade
		{0x7f7fffff, 0x7f80}, // the largest float32 rounds to +Inf
		{0x7f800000, 0x7f80}, // +Inf
		{0x7f800001, 0x7fc0}, // a signalling NaN stays a NaN
		{0x00000001, 0x0000}, // the smallest subnormal rounds to zero
	} {
		if got := ToBF16(math.Float32frombits(tc.in)); got != tc.want {
			t.Errorf("ToBF16(%#08x) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
	if f := FromBF16(0x3f82); f != 1.015625 {
		t.Errorf("FromBF16(0x3f82) = %g", f)
	}
}

// runBF16 is run for SgemmBF16: the reference sums the bf16-rounded
// inputs, whose rounding is the whole difference from fp32; the sums
// obey fp32's bound.
func (g gemmCase) runBF16(t testing.TB, r *rand.Rand) {
	t.Helper()
	g.check(t, r, SgemmBF16, func(x float32) float32 { return FromBF16(ToBF16(x)) })
}

// eachBF16Kernel runs f with the portable bf16 kernel and, where the CPU
// has one, the hardware kernel.
func eachBF16Kernel(t *testing.T, f func(t *testing.T)) {
	kns := []bf16Kernel{{name: "generic", mr: 4, nr: 4, fn: kernBF16Generic}}
	if HasBF16() {
		kns = append(kns, activeBF16)
	} else {
		t.Log("this CPU has no AVX512_BF16: only the portable kernel runs")
	}
	for _, kn := range kns {
		t.Run(kn.name, func(t *testing.T) {
			old, oldRows, oldGather := activeBF16, pairRowsFn, pairGatherFn
			activeBF16 = kn
			if kn.name == "generic" { // and the portable packing loops
				pairRowsFn, pairGatherFn = scalarPairRows, func([]uint32, int, []float32, int, int, int) bool { return false }
			}
			defer func() { activeBF16, pairRowsFn, pairGatherFn = old, oldRows, oldGather }()
			f(t)
		})
	}
}

func scalarPairRows(dst []uint32, r0, r1 []float32, n int) {
	for j := range n {
		dst[j] = pairBF16(r0[j], r1[j])
	}
}

// The vector packers round as ToBF16 does, bit for bit: ties, NaNs,
// infinities, subnormals, the carry into the exponent.
func TestPairPackersMatchToBF16(t *testing.T) {
	special := []uint32{0x3f808000, 0x3f818000, 0x3f808001, 0xbf7fffff, 0x7f7fffff, 0x7f800000, 0xff800000,
		0x7f800001, 0x7fffffff, 0xffffffff, 0x7fc00000, 0x00000001, 0x807fffff, 0x00008000, 0x00018000, 0, 0x80000000}
	r := rand.New(rand.NewPCG(13, 14))
	n := 16*5 + 7 // whole vectors and a masked tail
	r0, r1 := make([]float32, n), make([]float32, n)
	for i := range n {
		r0[i], r1[i] = float32(r.NormFloat64()), math.Float32frombits(r.Uint32())
		if i < len(special) {
			r0[i] = math.Float32frombits(special[i])
			r1[i] = math.Float32frombits(special[len(special)-1-i])
		}
	}
	want, got := make([]uint32, n), make([]uint32, n+1)
	scalarPairRows(want, r0, r1, n)
	pairRowsFn(got, r0, r1, n)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pairRows[%d] (%#08x, %#08x) = %#08x, want %#08x", i, math.Float32bits(r0[i]), math.Float32bits(r1[i]), got[i], want[i])
		}
	}
	if got[n] != 0 {
		t.Fatal("pairRows wrote past n")
	}
	// Gathered: lanes are rows of src, the pair's values adjacent.
	lanes, kp, ld := 13, 6, 15
	src := make([]float32, lanes*ld)
	for i := range src {
		src[i] = r0[i%n]
		if i%3 == 0 {
			src[i] = r1[i%n]
		}
	}
	stride := 16
	gd := make([]uint32, kp*stride)
	if !pairGatherFn(gd, stride, src, ld, lanes, kp) {
		t.Skip("no gathers on this CPU")
	}
	for p := range kp {
		for j := range stride {
			w := uint32(0)
			if j < lanes {
				w = pairBF16(src[j*ld+2*p], src[j*ld+2*p+1])
			}
			if gd[p*stride+j] != w {
				t.Fatalf("pairGather[%d][%d] = %#08x, want %#08x", p, j, gd[p*stride+j], w)
			}
		}
	}
}

func TestSgemmBF16Shapes(t *testing.T) {
	dims := []int{1, 2, 3, 5, 13, 17, 33, 65}
	eachBF16Kernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, m := range dims {
					for _, n := range dims {
						k := dims[r.IntN(len(dims))]
						g := gemmCase{tA: tA, tB: tB, m: m, n: n, k: k, pad: r.IntN(3), alpha: 1, beta: 1}
						g.runBF16(t, r)
					}
				}
			}
		}
	})
}

func TestSgemmBF16Blocks(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	eachBF16Kernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, g := range []gemmCase{
			{m: 300, n: 70, k: 1100, alpha: 1, beta: 1}, // split along m, 3 K blocks (odd k), 2 M blocks
			{m: 61, n: 333, k: 257, pad: 3, alpha: 1, beta: 0},
			{tB: true, m: 128, n: 512, k: 784, alpha: 1, beta: 0}, // the MLP's first layer
			{tA: true, tB: true, m: 200, n: 150, k: 601, alpha: 0.5, beta: 2},
		} {
			g.runBF16(t, r)
		}
	})
}

// The hardware kernel gives the portable kernel's bits: each pair adds
// its odd product, then its even one, rounding each sum.
func TestBF16KernelsAgree(t *testing.T) {
	if !HasBF16() {
		t.Skip("no AVX512_BF16 on this CPU")
	}
	r := rand.New(rand.NewPCG(11, 12))
	m, n, k := 77, 95, 1031
	a, b := make([]float32, m*k), make([]float32, k*n)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	for i := range b {
		b[i] = float32(r.NormFloat64())
	}
	prod := func(kn bf16Kernel) []float32 {
		old := activeBF16
		activeBF16 = kn
		defer func() { activeBF16 = old }()
		c := make([]float32, m*n)
		SgemmBF16(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		return c
	}
	hw, portable := prod(activeBF16), prod(bf16Kernel{name: "generic", mr: 4, nr: 4, fn: kernBF16Generic})
	for i := range hw {
		if hw[i] != portable[i] {
			t.Fatalf("C[%d]: %s kernel %x, portable %x", i, activeBF16.name, math.Float32bits(hw[i]), math.Float32bits(portable[i]))
		}
	}
}

func TestSgemmBF16NoAlloc(t *testing.T) {
	// No GC while counting: one emptying the workspace pool costs a
	// refill, more often on a slow (emulated) CPU.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	m, n, k := 128, 512, 784
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	f := func() { SgemmBF16(false, true, m, n, k, 1, a, k, b, k, 0, c, n) }
	for range 5 {
		f()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 50 {
		f()
	}
	runtime.ReadMemStats(&after)
	if allocs := after.Mallocs - before.Mallocs; allocs >= 30 {
		t.Errorf("%d allocations in 50 split products", allocs)
	}
}
