package trainer

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

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
	evalMatchesTraining(t, m, ds)
	trainModel(t, m, ds, 8, 5, 1e-2)
	evalMatchesTraining(t, m, ds)
}

// evalMatchesTraining checks that Evaluate (a separate forward graph)
// gives the training graph's loss on ds, one batch, from the same
// parameters.
func evalMatchesTraining(t *testing.T, m Model, ds *Dataset) {
	t.Helper()
	loss, err := m.ComputeGradients(ds.X, ds.Y)
	if err != nil {
		t.Fatal(err)
	}
	_, evalLoss, err := m.Evaluate(ds)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(evalLoss-float64(loss)) > 1e-5 {
		t.Errorf("%s: eval loss %.7f, training loss %.7f", ds.Name, evalLoss, loss)
	}
}
