package trainer

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// The native MLP and CNN in bf16 compute the fp32 model's gradient to
// bf16's precision (inputs rounded to 8 bits of mantissa), and really
// round: the two gradients are not the same bits. Without a hidden layer
// the error is the rounding's alone; with hidden layers a few
// pre-activations near zero land on the other side of their ReLU (or a
// pool's maximum moves), which moves whole rows of a weight gradient
// (about 5% of its norm here), as any perturbation would.
func TestBF16Gradient(t *testing.T) {
	if !kernels.HasBF16() {
		t.Skip("no AVX512_BF16 on this CPU: --precision bf16 is refused here")
	}
	for _, tc := range []struct {
		name   string
		cfg    ModelConfig
		shape  []int
		maxErr float64
	}{
		{"mlp, no hidden layer", ModelConfig{}, []int{1, 28, 28}, 5e-3},
		{"mlp 64-32", ModelConfig{Hidden: []int{64, 32}}, []int{1, 28, 28}, 0.1},
		{"cnn", ModelConfig{Arch: ArchCNN, Channels: []int{4, 8}, Hidden: []int{16}}, []int{3, 12, 12}, 0.1},
	} {
		dim := tc.shape[0] * tc.shape[1] * tc.shape[2]
		ds := &Dataset{Name: "t", Dim: dim, Classes: 10, Shape: tc.shape}
		cfg := tc.cfg
		cfg.Batch, cfg.Seed, cfg.Engine = 32, 3, EngineNative
		fp32, err := NewModel(cfg, ds)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Precision = PrecisionBF16
		bf16, err := NewModel(cfg, ds)
		if err != nil {
			t.Fatal(err)
		}
		n := fp32.NumParams()
		g1, g2 := make([]float32, n), make([]float32, n)
		r := rand.New(rand.NewPCG(5, 6))
		x, y := randomBatch(r, 32, dim, 10)
		l1, err1 := fp32.ComputeGradients(x, y)
		l2, err2 := bf16.ComputeGradients(x, y)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		fp32.AddGrads(g1, 1)
		bf16.AddGrads(g2, 1)
		if d := relErr([]float32{l1}, []float32{l2}); d > 1e-3 {
			t.Errorf("%s: loss %g in bf16, %g in fp32", tc.name, l2, l1)
		}
		e := relErr(g1, g2)
		t.Logf("%s: gradient relative error bf16 vs fp32: %.2g", tc.name, e)
		if e == 0 {
			t.Errorf("%s: the bf16 gradient is the fp32 one bit for bit: bf16 is not in use", tc.name)
		}
		if e > tc.maxErr {
			t.Errorf("%s: gradient relative error %g, want ≤ %g", tc.name, e, tc.maxErr)
		}
	}
}

func TestPrecisionRefused(t *testing.T) {
	for _, tc := range []struct {
		cfg  ModelConfig
		want string
	}{
		{ModelConfig{Batch: 1, Precision: "fp8"}, `Precision="fp8"`},
		{ModelConfig{Batch: 1, Precision: PrecisionBF16, Engine: EngineGorgonia}, "not the mlp on gorgonia"},
		{ModelConfig{Batch: 1, Precision: PrecisionBF16, Arch: ArchBERT}, "not the bert"},
		{ModelConfig{Batch: 1, Precision: PrecisionBF16, Arch: ArchCNN, Engine: EngineGorgonia}, "not the cnn on gorgonia"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want one naming %q", tc.cfg, err, tc.want)
		}
	}
	if err := CheckPrecision("fp16"); err == nil {
		t.Error("CheckPrecision accepted fp16")
	}
	if err := CheckPrecision(PrecisionBF16); (err == nil) != kernels.HasBF16() {
		t.Errorf("CheckPrecision(bf16) = %v on a CPU whose bf16 is %v", err, kernels.HasBF16())
	}
}
