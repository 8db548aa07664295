package engine

import (
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestCNNStepAllocatesNothing: the default CNN's buffers are planned in
// NewCNN; a step, with sgemm split over two goroutines, allocates nothing
// but what refills sgemm's workspace pools, which hand a goroutine on one
// P a fresh workspace while another P's sits idle: fewer than one a step.
// The collector is off while it counts, so that it empties no pool.
func TestCNNStepAllocatesNothing(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	m, err := NewCNN([]int{1, 28, 28}, []int{16, 32}, 5, []int{128}, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := range m.Params() {
		m.Params()[i] = float32(r.NormFloat64()) * 0.05
	}
	x, y := randn(r, 16*784), make([]uint8, 16)
	for i := range y {
		y[i] = uint8(r.IntN(10))
	}
	for range 5 {
		if _, err := m.Step(x, y); err != nil {
			t.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 20 {
		if _, err := m.Step(x, y); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.Mallocs - before.Mallocs; n >= 20 {
		t.Errorf("%d allocations in 20 steps", n)
	}
}

func TestCNNRefuses(t *testing.T) {
	for _, tc := range []struct {
		shape, channels []int
		k, classes      int
		rows            int
	}{
		{[]int{1, 8}, []int{2}, 5, 2, 1},
		{[]int{1, 8, 8}, []int{2}, 4, 2, 1},
		{[]int{1, 8, 8}, nil, 5, 2, 1},
		{[]int{1, 8, 8}, []int{0}, 5, 2, 1},
		{[]int{1, 3, 3}, []int{2, 2}, 5, 2, 1},
		{[]int{1, 8, 8}, []int{2}, 5, 2, 0},
		{[]int{1, 8, 8}, []int{2}, 5, 0, 1},
	} {
		if _, err := NewCNN(tc.shape, tc.channels, tc.k, nil, tc.classes, tc.rows); err == nil {
			t.Errorf("NewCNN(%v, %v, k=%d, classes=%d, rows=%d) accepted", tc.shape, tc.channels, tc.k, tc.classes, tc.rows)
		}
	}
	m, err := NewCNN([]int{1, 4, 4}, []int{2}, 3, nil, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Step(make([]float32, 3*16), make([]uint8, 3)); err == nil {
		t.Error("3 rows accepted by a plan for 2")
	}
	if _, err := m.Step(make([]float32, 15), make([]uint8, 1)); err == nil {
		t.Error("15 values accepted for a row of 16")
	}
	if _, err := m.Step(make([]float32, 16), []uint8{3}); err == nil {
		t.Error("label 3 accepted for 3 classes")
	}
	for _, g := range m.Grads() {
		if g != 0 {
			t.Fatal("gradient not zero after a refused step")
		}
	}
}

// BenchmarkCNNStep times forward and backward of the default CNN (16, 32
// channels, fc 128) at batch 64, the shape `bench train` reports. best-ms
// is the fastest step: on a shared machine others' load only slows one;
// cpu-ms/op is the process's CPU time a step, which load moves less.
func BenchmarkCNNStep(b *testing.B) {
	m, err := NewCNN([]int{1, 28, 28}, []int{16, 32}, 5, []int{128}, 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := range m.Params() {
		m.Params()[i] = float32(r.NormFloat64()) * 0.05
	}
	x, y := randn(r, 64*784), make([]uint8, 64)
	for i := range y {
		y[i] = uint8(r.IntN(10))
	}
	best := time.Duration(math.MaxInt64)
	cpu := cpuSeconds()
	for b.Loop() {
		t := time.Now()
		if _, err := m.Step(x, y); err != nil {
			b.Fatal(err)
		}
		best = min(best, time.Since(t))
	}
	b.ReportMetric(float64(best.Microseconds())/1000, "best-ms")
	b.ReportMetric((cpuSeconds()-cpu)*1000/float64(b.N), "cpu-ms/op")
}
