package engine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// fdCheck compares analytic gradients with central differences of f
// along random directions. xs are the inputs f reads (perturbed in
// place), gs their analytic gradients. f must be a scalar computed in
// float64 from float32 values.
func fdCheck(t *testing.T, name string, r *rand.Rand, f func() float64, xs, gs [][]float32) {
	t.Helper()
	// Five-point differences: the truncation error is O(eps⁴), so eps can
	// be large enough that float32 rounding in f stays far below 1e-3.
	const eps = 3e-2
	for dir := range 4 {
		// A unit direction: the step's length does not grow with the
		// number of inputs.
		var dot, norm float64
		vs := make([][]float64, len(xs))
		orig := make([][]float32, len(xs))
		for i, x := range xs {
			vs[i] = make([]float64, len(x))
			orig[i] = append([]float32(nil), x...)
			for j := range x {
				vs[i][j] = r.NormFloat64()
				norm += vs[i][j] * vs[i][j]
			}
		}
		for i := range xs {
			for j := range vs[i] {
				vs[i][j] /= math.Sqrt(norm)
				dot += vs[i][j] * float64(gs[i][j])
			}
		}
		shift := func(s float64) float64 {
			for i, x := range xs {
				for j := range x {
					x[j] = float32(float64(orig[i][j]) + s*vs[i][j])
				}
			}
			return f()
		}
		fd := (8*(shift(eps)-shift(-eps)) - (shift(2*eps) - shift(-2*eps))) / (12 * eps)
		shift(0)
		if e := math.Abs(fd-dot) / max(math.Abs(dot), 1e-2); e > 1e-3 {
			t.Errorf("%s direction %d: gradient·v = %.6g, finite difference %.6g (relative error %.2g)", name, dir, dot, fd, e)
		}
	}
}

func randScaled(r *rand.Rand, n int, s float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * s)
	}
	return x
}

// dotF64 is Σ w·y in float64: a loss whose gradient at y is w.
func dotF64(w, y []float32) float64 {
	var s float64
	for i, v := range y {
		s += float64(w[i]) * float64(v)
	}
	return s
}

func TestLayerNormGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct{ rows, d int }{{1, 7}, {5, 13}, {3, 64}} {
		x, g, b := randScaled(r, tc.rows*tc.d, 1), randScaled(r, tc.d, 1), randScaled(r, tc.d, 1)
		w := randScaled(r, tc.rows*tc.d, 1)
		y, xh, rs := make([]float32, len(x)), make([]float32, len(x)), make([]float32, tc.rows)
		f := func() float64 {
			layerNormForward(x, g, b, y, xh, rs, tc.rows, tc.d, 1e-12)
			return dotF64(w, y)
		}
		f()
		dx, dg, db := make([]float32, len(x)), make([]float32, tc.d), make([]float32, tc.d)
		layerNormBackward(w, xh, rs, g, dx, dg, db, tc.rows, tc.d)
		fdCheck(t, "layernorm", r, f, [][]float32{x, g, b}, [][]float32{dx, dg, db})
		// Normalised rows: zero mean, unit variance before the gain.
		var m float64
		for _, v := range xh[:tc.d] {
			m += float64(v)
		}
		if math.Abs(m) > 1e-4 {
			t.Errorf("row mean %g after normalising", m)
		}
	}
}

func TestGELUGradientAndValues(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 1))
	x := randScaled(r, 101, 2)
	x = append(x, 0, -0.01, 0.03, 5, -5, 12, -12, 1e-5, -3e-4, 9.5, -9.5, 0.2, 1e-30, 0)
	w := randScaled(r, len(x), 1)
	tt, y := make([]float32, len(x)), make([]float32, len(x))
	f := func() float64 { geluForward(x, tt, y); return dotF64(w, y) }
	f()
	for i, v := range x {
		want := 0.5 * float64(v) * (1 + math.Tanh(geluC*(float64(v)+geluA*math.Pow(float64(v), 3))))
		if math.Abs(float64(y[i])-want) > 1e-6*max(1, math.Abs(want)) {
			t.Errorf("gelu(%g) = %g, want %g", v, y[i], want)
		}
		if th := math.Tanh(geluC * (float64(v) + geluA*math.Pow(float64(v), 3))); math.Abs(float64(tt[i])-th) > 3e-7 {
			t.Errorf("gelu(%g) kept tanh %g, want %g", v, tt[i], th)
		}
	}
	dx := append([]float32(nil), w...)
	geluBackward(x, tt, dx)
	fdCheck(t, "gelu", r, f, [][]float32{x}, [][]float32{dx})
}

func TestExpTanh32(t *testing.T) {
	for x := float32(-90); x < 89; x += 0.0137 {
		got, want := float64(exp32(x)), math.Exp(float64(x))
		if want > math.MaxFloat32 {
			want = math.Inf(1)
		}
		if want > 1e-37 && got != want && math.Abs(got-want) > 3e-7*want {
			t.Fatalf("exp32(%g) = %g, want %g", x, got, want)
		}
		if th, want := float64(tanh32(x)), math.Tanh(float64(x)); math.Abs(th-want) > 2e-7*max(1e-3, math.Abs(want))*10 {
			t.Fatalf("tanh32(%g) = %g, want %g", x, th, want)
		}
	}
	if exp32(-1e9) != 0 || !math.IsInf(float64(exp32(100)), 1) {
		t.Error("exp32 out of range")
	}
}

// TestAttentionGradient: attention with padded keys, odd sizes, one
// sequence and several, against finite differences in q, k and v.
func TestAttentionGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 1))
	for _, tc := range []struct{ rows, seq, heads, dh int }{{1, 5, 1, 3}, {3, 7, 2, 5}, {2, 9, 3, 4}} {
		d := tc.heads * tc.dh
		N := tc.rows * tc.seq
		a := newAttention(tc.seq, d, tc.heads)
		q, k, v := randScaled(r, N*d, 1), randScaled(r, N*d, 1), randScaled(r, N*d, 1)
		bias := make([]float32, N)
		for i := range bias {
			if i%tc.seq >= tc.seq-2 && i%3 == 0 { // some padding at each sequence's end
				bias[i] = maskedLogit
			}
		}
		w := randScaled(r, N*d, 1)
		ctx, probs := make([]float32, N*d), make([]float32, tc.rows*tc.heads*tc.seq*tc.seq)
		f := func() float64 {
			a.q, a.k, a.v, a.ctx, a.probs, a.keyBias, a.backward = q, k, v, ctx, probs, bias, false
			a.run(0, tc.rows*tc.heads)
			return dotF64(w, ctx)
		}
		f()
		for i, p := range probs { // padding keys get no weight
			if bias[(i/(tc.seq*tc.seq)/tc.heads)*tc.seq+i%tc.seq] != 0 && p != 0 {
				t.Fatalf("padding key has probability %g", p)
			}
		}
		dq, dk, dv := make([]float32, N*d), make([]float32, N*d), make([]float32, N*d)
		a.dq, a.dk, a.dv, a.dctx, a.dprobs, a.backward = dq, dk, dv, w, make([]float32, len(probs)), true
		a.run(0, tc.rows*tc.heads)
		fdCheck(t, "attention", r, f, [][]float32{q, k, v}, [][]float32{dq, dk, dv})
	}
}

func TestMaskedCrossEntropyGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 1))
	want := []int{2, -1, 0, 6, -1}
	z := randScaled(r, len(want)*7, 2)
	dz := make([]float32, len(z))
	f := func() float64 { return float64(maskedCrossEntropy(z, dz, want, 7, 3)) }
	f()
	g := append([]float32(nil), dz...)
	for _, v := range g[7:14] {
		if v != 0 {
			t.Fatal("unscored row has a gradient")
		}
	}
	fdCheck(t, "cross-entropy", r, f, [][]float32{z}, [][]float32{g})
	if l := maskedCrossEntropy(z, dz, []int{-1, -1, -1, -1, -1}, 7, 0); l != 0 {
		t.Errorf("nothing scored: loss %g", l)
	}
}

func TestEmbedGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 1))
	const V, T, d, rows = 6, 4, 3, 2
	tok, pos, seg := randScaled(r, V*d, 1), randScaled(r, T*d, 1), randScaled(r, 2*d, 1)
	ids, segs := []int{1, 5, 5, 0, 2, 2, 2, 1}, []int{0, 0, 1, 1, 0, 1, 1, 1}
	out, w := make([]float32, rows*T*d), randScaled(r, rows*T*d, 1)
	f := func() float64 { embedForward(tok, pos, seg, ids, segs, out, rows*T, T, d); return dotF64(w, out) }
	f()
	dt, dp, ds := make([]float32, V*d), make([]float32, T*d), make([]float32, 2*d)
	embedBackward(w, ids, segs, dt, dp, ds, rows*T, T, d)
	fdCheck(t, "embed", r, f, [][]float32{tok, pos, seg}, [][]float32{dt, dp, ds})
	at, back := make([]float32, 3*d), make([]float32, len(out))
	gatherRows(out, []int{7, 0, 7}, at, d)
	scatterAddRows(at, []int{7, 0, 7}, back, d)
	if back[7*d] != 2*out[7*d] || back[0] != out[0] || back[d] != 0 {
		t.Error("gather/scatter: a repeated row must sum, an unused one stay 0")
	}
}

// TestExpSum: the vector path (where this CPU has one) against exp32 per
// value, with tails of every length, a shift, and masked scores.
func TestExpSum(t *testing.T) {
	if expSumVec == nil {
		t.Log("no vector exp on this CPU: the scalar loop only")
	}
	r := rand.New(rand.NewPCG(6, 1))
	for n := range 40 {
		x := randScaled(r, n, 10)
		if n > 3 {
			x[2] = maskedLogit
			x[n-1] = -88
		}
		m := float32(0)
		for _, v := range x {
			m = max(m, v)
		}
		got := append([]float32(nil), x...)
		s := expSum(got, m)
		var want float64
		for i, v := range x {
			e := float64(exp32(v - m))
			want += e
			if math.Abs(float64(got[i])-e) > 3e-7*e || (e == 0) != (got[i] == 0) {
				t.Fatalf("n=%d: exp(%g) = %g, want %g", n, v-m, got[i], e)
			}
		}
		if math.Abs(float64(s)-want) > 1e-6*max(want, 1e-30) {
			t.Errorf("n=%d: sum %g, want %g", n, s, want)
		}
	}
}

// TestBERTScalarPath: the whole-model gradient check with the vector
// exp switched off, the path other CPUs take.
func TestBERTScalarPath(t *testing.T) {
	defer func(v func([]float32, float32) (int, float32), g func(x, t, y []float32) int) {
		expSumVec, geluVec = v, g
	}(expSumVec, geluVec)
	expSumVec, geluVec = nil, nil
	TestGELUGradientAndValues(t)
	TestBERTWholeGradient(t)
	TestAttentionGradient(t)
}
