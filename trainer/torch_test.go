package trainer

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// The torch layout of an MLP is what nn.Sequential(Linear, ReLU, …)
// loads: its names and out×in shapes, and values that, run the way
// torch runs a Linear (W·x + b), classify as the model does.
func TestTorchLayoutMLP(t *testing.T) {
	ds := synthDataset(300, 12, 4, 7)
	m, err := NewMLP(ModelConfig{Hidden: []int{16, 8}, Batch: 10, Seed: 3}, ds.Dim, ds.Classes)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	trainModel(t, m, ds, 10, 40, 0.05) // weights that are not their init
	params := make([]float32, m.NumParams())
	m.ReadParams(params)
	tensors, vals, err := TorchLayout(ArchMLP, m.Tensors(), params)
	if err != nil {
		t.Fatal(err)
	}
	want := []Tensor{{"0.weight", []int{16, 12}}, {"0.bias", []int{16}}, {"2.weight", []int{8, 16}}, {"2.bias", []int{8}}, {"4.weight", []int{4, 8}}, {"4.bias", []int{4}}}
	if !slices.EqualFunc(tensors, want, func(a, b Tensor) bool { return a.Name == b.Name && slices.Equal(a.Shape, b.Shape) }) {
		t.Fatalf("torch tensors %v, want %v", tensors, want)
	}
	acc, _, err := m.Evaluate(ds)
	if err != nil {
		t.Fatal(err)
	}
	if got := torchSequentialAccuracy(tensors, vals, ds); got != acc {
		t.Fatalf("the torch layout classifies %.4f right, the model %.4f", got, acc)
	}
}

// torchSequentialAccuracy runs Linear/ReLU layers as torch does: y = W·x
// + b with W out×in, laid out row-major.
func torchSequentialAccuracy(tensors []Tensor, vals []float32, ds *Dataset) float64 {
	right := 0
	for r := range ds.N {
		x := slices.Clone(ds.Rows(r, 1, make([]float32, ds.Dim)))
		off := 0
		for l := 0; l < len(tensors); l += 2 {
			out, in := tensors[l].Shape[0], tensors[l].Shape[1]
			w, b := vals[off:off+out*in], vals[off+out*in:off+out*in+out]
			off += out*in + out
			y := make([]float32, out)
			for o := range out {
				s := b[o]
				for i := range in {
					s += w[o*in+i] * x[i]
				}
				if l+2 < len(tensors) {
					s = max(s, 0)
				}
				y[o] = s
			}
			x = y
		}
		best := 0
		for c := range x {
			if x[c] > x[best] {
				best = c
			}
		}
		if best == int(ds.Y[r]) {
			right++
		}
	}
	return float64(right) / float64(ds.N)
}

func TestTorchLayoutCNNNames(t *testing.T) {
	in := []Tensor{{"conv.0.weight", []int{4, 1, 5, 5}}, {"conv.0.bias", []int{4}}, {"conv.1.weight", []int{8, 4, 5, 5}}, {"conv.1.bias", []int{8}},
		{"fc.0.weight", []int{392, 32}}, {"fc.0.bias", []int{32}}, {"fc.1.weight", []int{32, 10}}, {"fc.1.bias", []int{10}}}
	n := 0
	for _, t := range in {
		n += t.Size()
	}
	out, _, err := TorchLayout(ArchCNN, in, make([]float32, n))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, t := range out {
		got = append(got, fmt.Sprint(t.Name, t.Shape))
	}
	want := []string{"0.weight[4 1 5 5]", "0.bias[4]", "3.weight[8 4 5 5]", "3.bias[8]", "7.weight[32 392]", "7.bias[32]", "9.weight[10 32]", "9.bias[10]"}
	if !slices.Equal(got, want) {
		t.Fatalf("cnn torch names %v, want %v", got, want)
	}
}

func TestTorchLayoutRefuses(t *testing.T) {
	if _, _, err := TorchLayout("rnn", nil, nil); err == nil || !strings.Contains(err.Error(), "rnn") {
		t.Fatalf("unknown model: %v", err)
	}
	if _, _, err := TorchLayout(ArchMLP, []Tensor{{"head.weight", []int{2, 2}}}, make([]float32, 4)); err == nil || !strings.Contains(err.Error(), "head.weight") {
		t.Fatalf("foreign name: %v", err)
	}
	if _, _, err := TorchLayout(ArchMLP, []Tensor{{"layers.0.weight", []int{2, 2}}}, make([]float32, 3)); err == nil {
		t.Fatal("short params accepted")
	}
}
