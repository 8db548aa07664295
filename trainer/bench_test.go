package trainer

import "testing"

// BenchmarkStep times one training step of a 784-256-10 MLP at batch 64:
// ComputeGradients (forward+backward through gorgonia), AddGrads, an Adam
// step on the flat buffers and WriteParams, as the node runs it.
//
//	go test ./trainer/ -run '^$' -bench Step -benchtime 300x -count 3
//
// 2 vCPU AMD EPYC, pure-Go gonum BLAS, Go 1.26.8, box shared (load 3.5):
// 8.8–9.3 ms/step, 6900–7300 samples/s, 5.6–5.9 GFLOP/s executed,
// 1.1 MB and ~960 allocations per step (gorgonia's tape). Pruning the unused
// input gradient from the tape took the step from 19 ms to 9 ms.
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
	b.ReportAllocs()
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
	// FLOPs actually executed: forward and dW are 2·B·in·out per layer; dX
	// only for layers after the first (the input gradient is pruned from the
	// tape), so this is less than the customary 3× forward.
	flops := 2 * batch * float64(2*in*hidden+3*hidden*classes)
	b.ReportMetric(float64(b.N*batch)/sec, "samples/s")
	b.ReportMetric(flops*float64(b.N)/sec/1e9, "GFLOP/s")
}
