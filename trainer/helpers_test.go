package trainer

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
)

// synthDataset returns n rows of dim Gaussian-ish features whose label is
// a fixed linear function's arg-max, so a model can learn it.
func synthDataset(n, dim, classes int, seed uint64) *Dataset {
	r := rand.New(rand.NewPCG(seed, 1))
	proj := make([]float32, dim*classes)
	for i := range proj {
		proj[i] = float32(r.NormFloat64())
	}
	d := &Dataset{Name: "synth", X: make([]float32, n*dim), Y: make([]uint8, n), N: n, Dim: dim, Classes: classes}
	for i := range n {
		row := d.X[i*dim : (i+1)*dim]
		for j := range row {
			row[j] = float32(r.NormFloat64())
		}
		best, bestV := 0, float32(0)
		for c := range classes {
			var s float32
			for j, v := range row {
				s += v * proj[j*classes+c]
			}
			if c == 0 || s > bestV {
				best, bestV = c, s
			}
		}
		d.Y[i] = uint8(best)
	}
	return d
}

var mnistOnce struct {
	sync.Once
	train, test *Dataset
	err         error
}

// realMNIST loads the GoMNIST data once per test binary.
func realMNIST(t testing.TB) (train, test *Dataset) {
	t.Helper()
	mnistOnce.Do(func() { mnistOnce.train, mnistOnce.test, mnistOnce.err = LoadMNIST("") })
	if mnistOnce.err != nil {
		t.Fatalf("LoadMNIST(\"\"): %v", mnistOnce.err)
	}
	return mnistOnce.train, mnistOnce.test
}

// trainModel runs steps of Adam with a cosine schedule on ds and returns
// the last batch loss.
func trainModel(t testing.TB, m Model, ds *Dataset, batch, steps int, lr float32) float32 {
	t.Helper()
	return trainModelSeed(t, m, ds, batch, steps, lr, 2)
}

// trainModelSeed is trainModel with the batch order drawn from seed.
func trainModelSeed(t testing.TB, m Model, ds *Dataset, batch, steps int, lr float32, seed uint64) float32 {
	t.Helper()
	n := m.NumParams()
	params, grads := make([]float32, n), make([]float32, n)
	m.ReadParams(params)
	opt := NewAdam(0.9, 0.999, 1e-8, 0, n)
	sched := Schedule{Base: lr, Min: lr / 20, Warmup: steps / 10, Total: steps, Decay: DecayCosine}
	b := NewBatcher(ds, batch, seed)
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

// readCorpus reads text files (DefaultCorpus when paths is empty) and
// returns their contents, one string per file.
func readCorpus(paths ...string) ([]string, error) {
	if len(paths) == 0 {
		var err error
		if paths, err = DefaultCorpus(); err != nil {
			return nil, err
		}
	}
	var docs []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("corpus: %w (give text files with --text)", err)
		}
		docs = append(docs, string(b))
	}
	return docs, nil
}
