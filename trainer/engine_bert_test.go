package trainer

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// bertPair builds the same BERT on both engines.
func bertPair(t *testing.T, cfg ModelConfig, ds *Dataset) (native, ref Model) {
	t.Helper()
	cfg.Arch = ArchBERT
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

// tinyMLM is n rows of seq-token masked-language-model data.
func tinyMLM(t *testing.T, n, seq int) *Dataset {
	t.Helper()
	tok := tinyTokens(t, 30)
	ds, err := MLMDataset("mlm", tok, []string{strings.Repeat("w7 w8 w9 w10 w11 w12 w13 w20 w21 w5 ", 30)}, seq, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	ds.N, ds.X, ds.Y = n, ds.X[:n*ds.Dim], ds.Y[:n]
	return ds
}

// TestNativeBERTMatchesGorgonia: the same tensors and initial
// parameters; loss, every tensor's gradient (named, so a failure points
// at the layer) and evaluation within 1e-3 of the gorgonia graph over a
// few SGD steps, for both heads, with padding, with dropout (the same
// masks from the same seed), odd sizes and one sequence.
func TestNativeBERTMatchesGorgonia(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ModelConfig
		ds   *Dataset
	}{
		{"classify", ModelConfig{Width: 8, Heads: 2, Layers: 2, Batch: 4, Seed: 2}, tinyClassify(9, 10, 20, 1)},
		{"classify-dropout-odd", ModelConfig{Width: 9, Heads: 3, Layers: 1, Batch: 3, Seed: 3, Dropout: 0.2}, tinyClassify(5, 7, 17, 2)},
		{"classify-one-row", ModelConfig{Width: 4, Heads: 1, Layers: 1, Batch: 1, Seed: 4}, tinyClassify(3, 5, 12, 3)},
		{"mlm", ModelConfig{Width: 8, Heads: 2, Layers: 2, Batch: 4, Seed: 5}, tinyMLM(t, 6, 12)},
		{"mlm-dropout", ModelConfig{Width: 12, Heads: 3, Layers: 2, Batch: 2, Seed: 6, Dropout: 0.1}, tinyMLM(t, 4, 9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			native, ref := bertPair(t, tc.cfg, tc.ds)
			tensors := ref.Tensors()
			if !slices.EqualFunc(native.Tensors(), tensors, func(a, b Tensor) bool { return a.Name == b.Name && slices.Equal(a.Shape, b.Shape) }) {
				t.Fatalf("tensors %v, gorgonia %v", native.Tensors(), tensors)
			}
			n := ref.NumParams()
			p, q := make([]float32, n), make([]float32, n)
			native.ReadParams(p)
			ref.ReadParams(q)
			if !slices.Equal(p, q) {
				t.Fatal("initial parameters differ")
			}
			b := tc.cfg.Batch
			for step := range 3 {
				lo := step * b % (tc.ds.N - b + 1)
				x, y := tc.ds.X[lo*tc.ds.Dim:(lo+b)*tc.ds.Dim], tc.ds.Y[lo:lo+b]
				l1, err1 := native.ComputeGradients(x, y)
				l2, err2 := ref.ComputeGradients(x, y)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				if d := math.Abs(float64(l1-l2)) / float64(l2); d > 1e-4 {
					t.Fatalf("step %d: loss %g, gorgonia %g", step, l1, l2)
				}
				g1, g2 := make([]float32, n), make([]float32, n)
				native.AddGrads(g1, 1)
				ref.AddGrads(g2, 1)
				whole := norm(g2)
				off := 0
				for _, tn := range tensors {
					a, c := g1[off:off+tn.Size()], g2[off:off+tn.Size()]
					if strings.HasSuffix(tn.Name, "attn.k.bias") {
						// Adding a constant to every key's score leaves the
						// softmax unchanged: this gradient is 0 but for
						// rounding, on both engines.
						if norm(a) > 1e-5*whole || norm(c) > 1e-5*whole {
							t.Errorf("step %d: gradient of %s: norm %g, gorgonia %g, want 0", step, tn.Name, norm(a), norm(c))
						}
					} else if e := relErr(a, c); e > 1e-3 {
						t.Errorf("step %d: gradient of %s: relative error %g", step, tn.Name, e)
					}
					off += tn.Size()
				}
				for i := range p {
					p[i] -= 0.5 * g2[i]
				}
				if err := native.WriteParams(p); err != nil {
					t.Fatal(err)
				}
				if err := ref.WriteParams(p); err != nil {
					t.Fatal(err)
				}
			}
			a1, lo1, err1 := native.Evaluate(tc.ds)
			a2, lo2, err2 := ref.Evaluate(tc.ds)
			if err1 != nil || err2 != nil || a1 != a2 || math.Abs(lo1-lo2) > 1e-4*lo2 {
				t.Fatalf("evaluate: native %g %g %v, gorgonia %g %g %v", a1, lo1, err1, a2, lo2, err2)
			}
		})
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// TestNativeBERTLoadsGorgoniaCheckpoint: an MLM checkpoint trained on
// gorgonia gives the native model the same held-out loss, and
// fine-tuning from it on either engine starts from the same loss.
func TestNativeBERTLoadsGorgoniaCheckpoint(t *testing.T) {
	mlm := tinyMLM(t, 8, 12)
	cfg := ModelConfig{Arch: ArchBERT, Width: 8, Heads: 2, Layers: 2, Batch: 4, Seed: 2, Engine: EngineGorgonia}
	pre, err := NewModel(cfg, mlm)
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	trainModel(t, pre, mlm, 4, 5, 1e-2)
	ckpt := &Checkpoint{Tensors: pre.Tensors(), Params: make([]float32, pre.NumParams())}
	pre.ReadParams(ckpt.Params)
	cfg.Engine = EngineNative
	nat, err := NewModel(cfg, mlm)
	if err != nil {
		t.Fatal(err)
	}
	if err := nat.WriteParams(ckpt.Params); err != nil {
		t.Fatal(err)
	}
	_, l1, err1 := pre.Evaluate(mlm)
	_, l2, err2 := nat.Evaluate(mlm)
	if err1 != nil || err2 != nil || math.Abs(l1-l2) > 1e-4 {
		t.Fatalf("MLM loss: gorgonia %g %v, native %g %v", l1, err1, l2, err2)
	}
	cls := tinyClassify(8, 12, 30, 1)
	var losses []float32
	for _, eng := range []string{EngineGorgonia, EngineNative} {
		c := cfg
		c.Engine, c.Seed = eng, 9
		fine, err := NewModel(c, cls)
		if err != nil {
			t.Fatal(err)
		}
		p := make([]float32, fine.NumParams())
		fine.ReadParams(p)
		if _, err := ckpt.Transfer(p, fine.Tensors()); err != nil {
			t.Fatal(err)
		}
		if err := fine.WriteParams(p); err != nil {
			t.Fatal(err)
		}
		l, err := fine.ComputeGradients(cls.X[:4*cls.Dim], cls.Y[:4])
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l)
		fine.Close()
	}
	if math.Abs(float64(losses[0]-losses[1])) > 1e-4 {
		t.Errorf("fine-tuning loss from the checkpoint: gorgonia %g, native %g", losses[0], losses[1])
	}
}

func TestNativeBERTRefuses(t *testing.T) {
	ds := tinyClassify(4, 10, 20, 4)
	m, err := NewModel(ModelConfig{Arch: ArchBERT, Width: 8, Heads: 2, Layers: 1, Batch: 4, Seed: 2, Engine: EngineNative}, ds)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []float32{20, -1, 1.5, float32(math.NaN())} {
		x := slices.Clone(ds.X)
		x[3] = bad
		if _, err := m.ComputeGradients(x, ds.Y); err == nil || !strings.Contains(err.Error(), "not an id") {
			t.Errorf("token %v: %v", bad, err)
		}
	}
	if _, err := m.ComputeGradients(ds.X, []uint8{0, 1, 2, 0}); err == nil || !strings.Contains(err.Error(), "label 2") {
		t.Errorf("label 2 of 2 classes: %v", err)
	}
	if _, err := m.ComputeGradients(ds.X[:10], ds.Y); err == nil {
		t.Error("short batch accepted")
	}
	if err := m.WriteParams(make([]float32, m.NumParams()-1)); err == nil {
		t.Error("short params accepted")
	}
	if _, _, err := m.Evaluate(tinyClassify(4, 9, 20, 4)); err == nil {
		t.Error("evaluation on 9-token rows accepted by a 10-token model")
	}
}
