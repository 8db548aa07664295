package trainer

import (
	"math"
	"math/rand/v2"
	"testing"
)

// cnnPair builds the same CNN on both engines for images of shape.
func cnnPair(t *testing.T, cfg ModelConfig, shape []int, classes int) (native, ref Model) {
	t.Helper()
	ds := &Dataset{Name: "t", Dim: shape[0] * shape[1] * shape[2], Classes: classes, Shape: shape}
	cfg.Arch = ArchCNN
	cfg.Engine = EngineNative
	native, err := NewModel(cfg, ds)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := native.(*nativeCNN); !ok {
		t.Fatalf("engine native built a %T", native)
	}
	cfg.Engine = EngineGorgonia
	ref, err = NewModel(cfg, ds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { native.Close(); ref.Close() })
	return native, ref
}

// TestNativeCNNMatchesGorgonia: same tensors, same initial parameters, and
// loss, gradient and evaluation within 1e-3 of the gorgonia graph over a
// few SGD steps: the default CNN on MNIST's shape, RGB 32×32 as image
// folders give it, odd sizes, batch 1.
func TestNativeCNNMatchesGorgonia(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 3))
	for _, tc := range []struct {
		shape            []int
		channels, hidden []int
		classes, batch   int
	}{
		{[]int{1, 28, 28}, nil, []int{32}, 10, 8},
		{[]int{3, 32, 32}, []int{4, 6}, []int{8}, 5, 1},
		{[]int{2, 9, 11}, []int{3, 5}, nil, 3, 3},
		{[]int{2, 9, 11}, []int{3, 5}, []int{6}, 3, 9}, // shards of 5 and 4 rows
		{[]int{1, 7, 7}, []int{2}, []int{5, 4}, 2, 2},
	} {
		native, ref := cnnPair(t, ModelConfig{Channels: tc.channels, Hidden: tc.hidden, Batch: tc.batch, Seed: 9}, tc.shape, tc.classes)
		a, b := native.Tensors(), ref.Tensors()
		if err := (&Checkpoint{Tensors: b}).Matches(a); err != nil {
			t.Fatalf("%v: %v", tc.shape, err)
		}
		n := ref.NumParams()
		p, q := make([]float32, n), make([]float32, n)
		native.ReadParams(p)
		ref.ReadParams(q)
		if relErr(p, q) != 0 {
			t.Fatalf("%v: initial parameters differ", tc.shape)
		}
		dim := tc.shape[0] * tc.shape[1] * tc.shape[2]
		for step := range 3 {
			x, y := randomBatch(r, tc.batch, dim, tc.classes)
			l1, err1 := native.ComputeGradients(x, y)
			l2, err2 := ref.ComputeGradients(x, y)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if d := math.Abs(float64(l1-l2)) / float64(l2); d > 1e-5 {
				t.Fatalf("%v step %d: loss %g, gorgonia %g", tc.shape, step, l1, l2)
			}
			g1, g2 := make([]float32, n), make([]float32, n)
			native.AddGrads(g1, 1)
			ref.AddGrads(g2, 1)
			if e := relErr(g1, g2); e > 1e-3 {
				t.Fatalf("%v step %d: gradient relative error %g", tc.shape, step, e)
			}
			for i := range p { // the same SGD step on both
				p[i] -= 0.1 * g2[i]
			}
			if err := native.WriteParams(p); err != nil {
				t.Fatal(err)
			}
			if err := ref.WriteParams(p); err != nil {
				t.Fatal(err)
			}
		}
		x, y := randomBatch(r, 250, dim, tc.classes) // more rows than a chunk, and a partial one
		ds := &Dataset{Name: "e", N: 250, Dim: dim, Classes: tc.classes, Shape: tc.shape, X: x, Y: y}
		a1, lo1, err1 := native.Evaluate(ds)
		a2, lo2, err2 := ref.Evaluate(ds)
		if err1 != nil || err2 != nil || a1 != a2 || math.Abs(lo1-lo2) > 1e-4*lo2 {
			t.Fatalf("%v evaluate: native %g %g %v, gorgonia %g %g %v", tc.shape, a1, lo1, err1, a2, lo2, err2)
		}
	}
}

// TestNativeCNNLoadsGorgoniaCheckpoint: a checkpoint written from a
// trained gorgonia CNN loads into the native one, which then gives the
// same loss on the same batch.
func TestNativeCNNLoadsGorgoniaCheckpoint(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	shape := []int{1, 12, 12}
	native, ref := cnnPair(t, ModelConfig{Channels: []int{4, 8}, Hidden: []int{16}, Batch: 4, Seed: 2}, shape, 10)
	n := ref.NumParams()
	p, g := make([]float32, n), make([]float32, n)
	ref.ReadParams(p)
	for range 5 { // move the gorgonia model off the common initialisation
		x, y := randomBatch(r, 4, 144, 10)
		if _, err := ref.ComputeGradients(x, y); err != nil {
			t.Fatal(err)
		}
		clear(g)
		ref.AddGrads(g, 1)
		for i := range p {
			p[i] -= 0.2 * g[i]
		}
		if err := ref.WriteParams(p); err != nil {
			t.Fatal(err)
		}
	}
	b, err := EncodeCheckpoint(Checkpoint{Step: 5, Tensors: ref.Tensors(), Params: p})
	if err != nil {
		t.Fatal(err)
	}
	ck, err := DecodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := ck.Matches(native.Tensors()); err != nil {
		t.Fatal(err)
	}
	if err := native.WriteParams(ck.Params); err != nil {
		t.Fatal(err)
	}
	x, y := randomBatch(r, 4, 144, 10)
	l1, err1 := native.ComputeGradients(x, y)
	l2, err2 := ref.ComputeGradients(x, y)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if d := math.Abs(float64(l1-l2)) / float64(l2); d > 1e-5 {
		t.Fatalf("loss after loading: native %g, gorgonia %g", l1, l2)
	}
}

// TestNativeCNNFiniteDifferences checks the whole network's backward
// pass against central differences of the loss along random directions.
func TestNativeCNNFiniteDifferences(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 7))
	cfg := ModelConfig{Arch: ArchCNN, Channels: []int{2, 3}, Hidden: []int{6}, Batch: 2, Seed: 5, Engine: EngineNative}
	shape := []int{2, 6, 7}
	m, err := NewModel(cfg, &Dataset{Name: "t", Dim: 84, Classes: 4, Shape: shape})
	if err != nil {
		t.Fatal(err)
	}
	x, y := randomBatch(r, 2, 84, 4)
	checkFiniteDifferences(t, r, m, x, y)
}

func TestNativeCNNRefuses(t *testing.T) {
	ds := &Dataset{Name: "t", Dim: 16, Classes: 3, Shape: []int{1, 4, 4}}
	m, err := NewModel(ModelConfig{Arch: ArchCNN, Channels: []int{2}, Batch: 2, Engine: EngineNative}, ds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.ComputeGradients(make([]float32, 32), []uint8{0, 3}); err == nil {
		t.Error("label 3 accepted for 3 classes")
	}
	if _, err := m.ComputeGradients(make([]float32, 31), []uint8{0, 1}); err == nil {
		t.Error("short x accepted")
	}
	if err := m.WriteParams(make([]float32, m.NumParams()-1)); err == nil {
		t.Error("short params accepted")
	}
	if _, _, err := m.Evaluate(&Dataset{Name: "e", N: 1, Dim: 9, Classes: 3, X: make([]float32, 9), Y: []uint8{0}}); err == nil {
		t.Error("a 9-value dataset evaluated by a 16-value model")
	}
	if _, err := NewModel(ModelConfig{Arch: ArchCNN, Channels: []int{2, 2, 2}, Batch: 1, Engine: EngineNative}, ds); err == nil {
		t.Error("three halvings of a 4×4 image accepted")
	}
}
