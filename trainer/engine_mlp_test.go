package trainer

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// nativePair builds the same MLP on both engines.
func nativePair(t *testing.T, cfg ModelConfig, dim, classes int) (native, ref Model) {
	t.Helper()
	ds := &Dataset{Name: "t", Dim: dim, Classes: classes}
	cfg.Engine = EngineNative
	native, err := NewModel(cfg, ds)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine = EngineGorgonia
	ref, err = NewModel(cfg, ds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { native.Close(); ref.Close() })
	return native, ref
}

func randomBatch(r *rand.Rand, rows, dim, classes int) ([]float32, []uint8) {
	x, y := make([]float32, rows*dim), make([]uint8, rows)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for i := range y {
		y[i] = uint8(r.IntN(classes))
	}
	return x, y
}

// relErr is ‖a−b‖/max(‖a‖,‖b‖) over the whole vector.
func relErr(a, b []float32) float64 {
	var d, na, nb float64
	for i := range a {
		d += math.Pow(float64(a[i])-float64(b[i]), 2)
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d) / max(math.Sqrt(max(na, nb)), 1e-30)
}

// TestNativeMLPMatchesGorgonia: same tensors, same initial parameters, and
// loss, gradient and evaluation within 1e-3 of the gorgonia graph, on odd
// widths and over a few SGD steps.
func TestNativeMLPMatchesGorgonia(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		hidden       []int
		dim, classes int
		batch        int
	}{{[]int{7}, 13, 3, 5}, {[]int{33, 17}, 29, 10, 16}, {nil, 9, 2, 1}, {[]int{64, 32}, 784, 10, 40}} {
		native, ref := nativePair(t, ModelConfig{Hidden: tc.hidden, Batch: tc.batch, Seed: 7}, tc.dim, tc.classes)
		if a, b := native.Tensors(), ref.Tensors(); len(a) != len(b) {
			t.Fatalf("tensors %v vs %v", a, b)
		} else {
			for i := range a {
				if a[i].Name != b[i].Name || a[i].Size() != b[i].Size() {
					t.Fatalf("tensor %d: %v vs %v", i, a[i], b[i])
				}
			}
		}
		n := ref.NumParams()
		p, q := make([]float32, n), make([]float32, n)
		native.ReadParams(p)
		ref.ReadParams(q)
		if relErr(p, q) != 0 {
			t.Fatalf("%v: initial parameters differ", tc.hidden)
		}
		for step := range 3 {
			x, y := randomBatch(r, tc.batch, tc.dim, tc.classes)
			l1, err1 := native.ComputeGradients(x, y)
			l2, err2 := ref.ComputeGradients(x, y)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if d := math.Abs(float64(l1-l2)) / float64(l2); d > 1e-5 {
				t.Fatalf("%v step %d: loss %g, gorgonia %g", tc.hidden, step, l1, l2)
			}
			g1, g2 := make([]float32, n), make([]float32, n)
			native.AddGrads(g1, 1)
			ref.AddGrads(g2, 1)
			if e := relErr(g1, g2); e > 1e-3 {
				t.Fatalf("%v step %d: gradient relative error %g", tc.hidden, step, e)
			}
			for i := range p { // the same SGD step on both
				p[i] -= 0.5 * g2[i]
			}
			if err := native.WriteParams(p); err != nil {
				t.Fatal(err)
			}
			if err := ref.WriteParams(p); err != nil {
				t.Fatal(err)
			}
		}
		x, y := randomBatch(r, 300, tc.dim, tc.classes) // more rows than a chunk
		ds := &Dataset{Name: "e", N: 300, Dim: tc.dim, Classes: tc.classes, X: x, Y: y}
		a1, lo1, err1 := native.Evaluate(ds)
		a2, lo2, err2 := ref.Evaluate(ds)
		if err1 != nil || err2 != nil || a1 != a2 || math.Abs(lo1-lo2) > 1e-4*lo2 {
			t.Fatalf("evaluate: native %g %g %v, gorgonia %g %g %v", a1, lo1, err1, a2, lo2, err2)
		}
	}
}

// TestNativeMLPFiniteDifferences checks the hand-written backward against
// central differences of the loss along random directions.
func TestNativeMLPFiniteDifferences(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cfg := ModelConfig{Hidden: []int{11, 6}, Batch: 4, Seed: 3, Engine: EngineNative}
	m, err := NewModel(cfg, &Dataset{Name: "t", Dim: 5, Classes: 4})
	if err != nil {
		t.Fatal(err)
	}
	x, y := randomBatch(r, 4, 5, 4)
	checkFiniteDifferences(t, r, m, x, y)
}

func TestNativeMLPRefuses(t *testing.T) {
	ds := &Dataset{Name: "t", Dim: 4, Classes: 3}
	m, err := NewModel(ModelConfig{Hidden: []int{5}, Batch: 2, Engine: EngineNative}, ds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.ComputeGradients(make([]float32, 8), []uint8{0, 3}); err == nil || !strings.Contains(err.Error(), "label 3") {
		t.Errorf("label out of range: %v", err)
	}
	if _, err := m.ComputeGradients(make([]float32, 7), []uint8{0, 1}); err == nil {
		t.Error("short x accepted")
	}
	if err := m.WriteParams(make([]float32, m.NumParams()-1)); err == nil {
		t.Error("short params accepted")
	}
	for _, cfg := range []ModelConfig{{Batch: 1, Engine: "tpu"}, {Arch: ArchBERT, Batch: 1, Engine: EngineNative, Precision: PrecisionBF16}} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// checkFiniteDifferences holds m's gradient on the batch (x, y) to central
// differences of its loss along 8 random directions (relative error ≤
// 1e-3), then leaves m's parameters perturbed.
func checkFiniteDifferences(t *testing.T, r *rand.Rand, m Model, x []float32, y []uint8) {
	t.Helper()
	n := m.NumParams()
	p := make([]float32, n)
	m.ReadParams(p)
	if _, err := m.ComputeGradients(x, y); err != nil {
		t.Fatal(err)
	}
	g := make([]float32, n)
	m.AddGrads(g, 1)
	loss := func(eps float64, v []float64) float64 {
		q := make([]float32, n)
		for i := range q {
			q[i] = float32(float64(p[i]) + eps*v[i])
		}
		if err := m.WriteParams(q); err != nil {
			t.Fatal(err)
		}
		l, err := m.ComputeGradients(x, y)
		if err != nil {
			t.Fatal(err)
		}
		return float64(l)
	}
	for d := range 8 {
		v := make([]float64, n)
		var dot float64
		for i := range v {
			v[i] = r.NormFloat64()
			dot += v[i] * float64(g[i])
		}
		const eps = 1e-3
		fd := (loss(eps, v) - loss(-eps, v)) / (2 * eps)
		if e := math.Abs(fd-dot) / max(math.Abs(dot), 1e-3); e > 1e-3 {
			t.Errorf("direction %d: gradient·v = %g, finite difference %g (relative error %g)", d, dot, fd, e)
		}
	}
}
