package engine

import (
	"math/rand/v2"
	"testing"

	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// UseBF16 reaches every product of the CNN: the convolutions (the first
// block's pooled output changes) as well as the dense layers.
func TestCNNUseBF16ReachesTheConvolutions(t *testing.T) {
	if !kernels.HasBF16() {
		t.Skip("no AVX512_BF16 on this CPU")
	}
	build := func(bf16 bool) *CNN {
		m, err := NewCNN([]int{1, 8, 8}, []int{4}, 5, nil, 3, 2)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(1, 2))
		for i := range m.Params() {
			m.Params()[i] = float32(r.NormFloat64()) * 0.3
		}
		if bf16 && !m.UseBF16() {
			t.Fatal("UseBF16 refused on a CPU with bf16")
		}
		return m
	}
	x := make([]float32, 2*64)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	a, b := build(false), build(true)
	if _, err := a.Forward(x, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Forward(x, 2); err != nil {
		t.Fatal(err)
	}
	same := true
	for i, v := range a.blocks[0].out {
		if v != b.blocks[0].out[i] {
			same = false
		}
	}
	if same {
		t.Error("the convolution's output is the fp32 one bit for bit: UseBF16 missed it")
	}
}
