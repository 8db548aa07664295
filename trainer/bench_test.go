package trainer

import "testing"

// BenchmarkStep times one training step of a 784-256-10 MLP at batch 64:
// ComputeGradients (forward+backward through gorgonia), AddGrads, an Adam
// step on the flat buffers and WriteParams, as the node runs it.
//
//	go test ./trainer/ -run '^$' -bench Step -benchtime 200x
func BenchmarkStep(b *testing.B) {
	const in, hidden, classes, batch = 784, 256, 10, 64
	ds := synthDataset(1024, in, classes, 1)
	m, err := NewMLP(ModelConfig{Hidden: []int{hidden}, Batch: batch, Seed: 1}, in, classes)
	if err != nil {
		b.Fatal(err)
	}
	n := m.NumParams()
	params, grads := make([]float32, n), make([]float32, n)
	m.ReadParams(params)
	opt := NewAdam(0.9, 0.999, 1e-8, 0, n)
	bt := NewBatcher(ds, batch, 1)
	x, y := make([]float32, batch*in), make([]uint8, batch)
	b.ResetTimer()
	for b.Loop() {
		bt.Next(x, y)
		if _, err := m.ComputeGradients(x, y); err != nil {
			b.Fatal(err)
		}
		clear(grads)
		m.AddGrads(grads, 1)
		opt.Step(params, grads, 1e-3)
		if err := m.WriteParams(params); err != nil {
			b.Fatal(err)
		}
	}
	sec := b.Elapsed().Seconds()
	// Forward 2·B·Σ in·out FLOPs, backward twice that.
	flops := 3 * 2 * batch * float64(in*hidden+hidden*classes)
	b.ReportMetric(float64(b.N*batch)/sec, "samples/s")
	b.ReportMetric(flops*float64(b.N)/sec/1e9, "GFLOP/s")
}
