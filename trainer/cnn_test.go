package trainer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// gradCheck builds loss = Σ R⊙block(inputs) in float64, where R is a fixed
// random tensor (so every output carries a distinct weight), and compares
// gorgonia's symbolic gradient of every input with central finite
// differences of the same graph.
func gradCheck(t *testing.T, shapes [][]int, block func(in []*G.Node) (*G.Node, error)) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	g := G.NewGraph()
	in := make([]*G.Node, len(shapes))
	for i, s := range shapes {
		data := make([]float64, tensor.Shape(s).TotalSize())
		for j := range data {
			data[j] = r.NormFloat64()
		}
		in[i] = G.NewTensor(g, tensor.Float64, len(s), G.WithShape(s...), G.WithName(string(rune('a'+i))),
			G.WithValue(tensor.New(tensor.WithShape(s...), tensor.WithBacking(data))))
	}
	out, err := block(in)
	if err != nil {
		t.Fatalf("building block: %v", err)
	}
	loss := out
	if !out.IsScalar() {
		weights := make([]float64, out.Shape().TotalSize())
		for j := range weights {
			weights[j] = r.NormFloat64()
		}
		rn := G.NewTensor(g, tensor.Float64, out.Dims(), G.WithShape(out.Shape()...), G.WithName("R"),
			G.WithValue(tensor.New(tensor.WithShape(out.Shape()...), tensor.WithBacking(weights))))
		prod, err := G.HadamardProd(out, rn)
		if err != nil {
			t.Fatal(err)
		}
		if loss, err = G.Sum(prod); err != nil {
			t.Fatal(err)
		}
	}
	var lv G.Value
	G.Read(loss, &lv)
	if _, err := G.Grad(loss, in...); err != nil {
		t.Fatalf("Grad: %v", err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(in...))
	defer vm.Close()
	eval := func() float64 {
		if err := vm.RunAll(); err != nil {
			t.Fatalf("run: %v", err)
		}
		vm.Reset()
		return lv.Data().(float64)
	}
	eval()
	analytic := make([][]float64, len(in))
	for i, n := range in {
		gv, err := n.Grad()
		if err != nil {
			t.Fatalf("grad of %s: %v", n.Name(), err)
		}
		analytic[i] = slices.Clone(gv.Data().([]float64))
	}
	const h = 1e-6
	for i, n := range in {
		data := n.Value().Data().([]float64)
		for j := range data {
			keep := data[j]
			data[j] = keep + h
			up := eval()
			data[j] = keep - h
			down := eval()
			data[j] = keep
			num := (up - down) / (2 * h)
			if d := math.Abs(num - analytic[i][j]); d > 1e-5*math.Max(1, math.Abs(num)) {
				t.Errorf("d loss/d %s[%d]: gorgonia %.8g, finite difference %.8g", n.Name(), j, analytic[i][j], num)
			}
		}
	}
}

func TestConvBlockGradient(t *testing.T) {
	// x [2,2,6,6], w [3,2,5,5], b [1,3,1,1]: padding, bias broadcast, ReLU
	// and pooling all sit on the path of every gradient.
	gradCheck(t, [][]int{{2, 2, 6, 6}, {3, 2, 5, 5}, {1, 3, 1, 1}}, func(in []*G.Node) (*G.Node, error) {
		return convBlock(in[0], in[1], in[2])
	})
}

func TestAffineGradient(t *testing.T) {
	gradCheck(t, [][]int{{3, 4}, {4, 5}, {1, 5}}, func(in []*G.Node) (*G.Node, error) {
		return affine(in[0], in[1], in[2])
	})
}

func TestCrossEntropyGradient(t *testing.T) {
	// Soft targets exercise every term of the log-softmax backward.
	gradCheck(t, [][]int{{3, 4}, {3, 4}}, func(in []*G.Node) (*G.Node, error) {
		return crossEntropy(in[0], in[1])
	})
}

func TestCNNTensors(t *testing.T) {
	m, err := NewCNN(ModelConfig{Hidden: []int{32}, Batch: 4, Seed: 1}, []int{1, 28, 28}, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var got []string
	for _, tn := range m.Tensors() {
		got = append(got, tn.Name+fmt.Sprint(tn.Shape))
	}
	want := []string{"conv.0.weight[16 1 5 5]", "conv.0.bias[16]", "conv.1.weight[32 16 5 5]", "conv.1.bias[32]",
		"fc.0.weight[1568 32]", "fc.0.bias[32]", "fc.1.weight[32 10]", "fc.1.bias[10]"}
	if !slices.Equal(got, want) {
		t.Errorf("tensors %v, want %v", got, want)
	}
	if n := m.NumParams(); n != 16*25+16+32*16*25+32+1568*32+32+32*10+10 {
		t.Errorf("NumParams %d", n)
	}
	if c := m.Config().Channels; !slices.Equal(c, DefaultChannels) {
		t.Errorf("Config().Channels = %v, want the default %v", c, DefaultChannels)
	}
}

// trainModel runs steps of Adam with a cosine schedule on ds and returns
// the last batch loss.
func trainModel(t testing.TB, m Model, ds *Dataset, batch, steps int, lr float32) float32 {
	t.Helper()
	n := m.NumParams()
	params, grads := make([]float32, n), make([]float32, n)
	m.ReadParams(params)
	opt := NewAdam(0.9, 0.999, 1e-8, 0, n)
	sched := Schedule{Base: lr, Min: lr / 20, Warmup: steps / 10, Total: steps, Decay: DecayCosine}
	b := NewBatcher(ds, batch, 2)
	x, y := make([]float32, batch*ds.Dim), make([]uint8, batch)
	var loss float32
	for s := range steps {
		b.Next(x, y)
		var err error
		if loss, err = m.ComputeGradients(x, y); err != nil {
			t.Fatal(err)
		}
		clear(grads)
		m.AddGrads(grads, 1)
		opt.Step(params, grads, sched.LR(s))
		if err := m.WriteParams(params); err != nil {
			t.Fatal(err)
		}
	}
	return loss
}

// TestCNNLearnsMNIST trains the default CNN briefly on real MNIST: the
// conv path, the eval graph and the parameter plumbing together.
func TestCNNLearnsMNIST(t *testing.T) {
	train, test := realMNIST(t)
	sub, err := train.Shard(1, 0, 12)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(ModelConfig{Arch: ArchCNN, Hidden: []int{64}, Batch: 32, Seed: 1}, sub)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := time.Now()
	loss := trainModel(t, m, sub, 32, 150, 2e-3)
	trainTime := time.Since(start)
	testSub, err := test.Shard(1, 0, 5) // 2000 rows: the eval graph costs ~1.6 ms a row
	if err != nil {
		t.Fatal(err)
	}
	acc, testLoss, err := m.Evaluate(testSub)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("150 steps in %v, last batch loss %.3f; test acc %.4f loss %.3f (eval %v)", trainTime.Round(time.Millisecond), loss, acc, testLoss, time.Since(start)-trainTime)
	if acc < 0.9 {
		t.Fatalf("test accuracy %.4f, want >= 0.9", acc)
	}
}

// TestCNNEvalGraphMatchesTraining checks that the separate eval graph sees
// the training parameters: on one batch its mean loss equals the training
// graph's loss, after a parameter change too.
func TestCNNEvalGraphMatchesTraining(t *testing.T) {
	ds := synthDataset(8, 64, 3, 5)
	ds.Shape = []int{1, 8, 8}
	m, err := NewModel(ModelConfig{Arch: ArchCNN, Channels: []int{4}, Hidden: []int{8}, Batch: 8, Seed: 3}, ds)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for round := range 2 {
		if round == 1 {
			trainModel(t, m, ds, 8, 5, 1e-2)
		}
		loss, err := m.ComputeGradients(ds.X, ds.Y)
		if err != nil {
			t.Fatal(err)
		}
		_, evalLoss, err := m.Evaluate(ds)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(evalLoss-float64(loss)) > 1e-5 {
			t.Errorf("round %d: eval loss %.7f, training loss %.7f", round, evalLoss, loss)
		}
	}
}
