package trainer

import "testing"

// BenchmarkStep times one training step of each shipped configuration
// (StepBenches) as a node runs it, and reports ms/step, samples/s and
// GFLOP/s (3× the forward multiply-adds ×2 per step).
//
//	go test ./trainer/ -run '^$' -bench Step -benchtime 20x -count 3
//	go test -tags openblas ./trainer/ -run '^$' -bench Step -benchtime 20x   # with OpenBLAS
//
// Numbers, and the same on OpenBLAS, are in docs/BENCHMARKS.md.
func BenchmarkStep(b *testing.B) {
	for _, sb := range StepBenches() {
		b.Run(sb.Name, func(b *testing.B) {
			step, _, done, err := sb.Prepare()
			if err != nil {
				b.Fatal(err)
			}
			defer done()
			if err := step(); err != nil { // warm-up: first-run allocations
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := step(); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(1000*sec/float64(b.N), "ms/step")
			b.ReportMetric(float64(b.N*sb.Model.Batch)/sec, "samples/s")
			b.ReportMetric(sb.FLOPs*float64(b.N)/sec/1e9, "GFLOP/s")
		})
	}
}

// Every shipped benchmark configuration builds and steps.
func TestStepBenchesRun(t *testing.T) {
	for _, sb := range StepBenches() {
		r, err := sb.Run(1)
		if err != nil {
			t.Fatal(err)
		}
		if r.MsPerStep <= 0 || r.GFLOPs <= 0 || r.Params == 0 {
			t.Errorf("%s: %+v", sb.Name, r)
		}
	}
}
