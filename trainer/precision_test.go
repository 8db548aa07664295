package trainer

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// The native MLP in bf16 computes the fp32 model's gradient to bf16's
// precision (inputs rounded to 8 bits of mantissa), and really rounds: the
// two gradients are not the same bits. Without a hidden layer the error is
// the rounding's alone; with hidden layers a few pre-activations near zero
// land on the other side of their ReLU, which moves whole rows of a
// weight gradient (about 5% of its norm here), as any perturbation would.
func TestBF16MLPGradient(t *testing.T) {
	if !kernels.HasBF16() {
		t.Skip("no AVX512_BF16 on this CPU: --precision bf16 is refused here")
	}
	for _, tc := range []struct {
		hidden []int
		maxErr float64
	}{{nil, 5e-3}, {[]int{64, 32}, 0.1}} {
		ds := &Dataset{Name: "t", Dim: 784, Classes: 10}
		cfg := ModelConfig{Hidden: tc.hidden, Batch: 32, Seed: 3, Engine: EngineNative}
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
		x, y := randomBatch(r, 32, 784, 10)
		l1, err1 := fp32.ComputeGradients(x, y)
		l2, err2 := bf16.ComputeGradients(x, y)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		fp32.AddGrads(g1, 1)
		bf16.AddGrads(g2, 1)
		if d := relErr([]float32{l1}, []float32{l2}); d > 1e-3 {
			t.Errorf("%v: loss %g in bf16, %g in fp32", tc.hidden, l2, l1)
		}
		e := relErr(g1, g2)
		t.Logf("%v: gradient relative error bf16 vs fp32: %.2g", tc.hidden, e)
		if e == 0 {
			t.Errorf("%v: the bf16 gradient is the fp32 one bit for bit: bf16 is not in use", tc.hidden)
		}
		if e > tc.maxErr {
			t.Errorf("%v: gradient relative error %g, want ≤ %g", tc.hidden, e, tc.maxErr)
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
		{ModelConfig{Batch: 1, Precision: PrecisionBF16, Arch: ArchCNN, Engine: EngineNative}, "not the cnn on native"},
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
