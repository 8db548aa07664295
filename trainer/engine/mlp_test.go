package engine

import (
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
)

// TestStepAllocatesNothing: buffers are planned in NewMLP; a step, with
// sgemm split over two goroutines, allocates nothing (a GC emptying
// sgemm's workspace pool may cost one refill).
func TestStepAllocatesNothing(t *testing.T) {
	// No GC while counting: one emptying the workspace pool costs a
	// refill, more often on a slow (emulated) CPU.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	m, err := NewMLP([]int{784, 512, 256, 10}, 128)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := range m.Params() {
		m.Params()[i] = float32(r.NormFloat64()) * 0.05
	}
	x, y := make([]float32, 128*784), make([]uint8, 128)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for i := range y {
		y[i] = uint8(r.IntN(10))
	}
	for range 3 {
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

func TestMLPRefuses(t *testing.T) {
	for _, tc := range []struct {
		sizes []int
		rows  int
	}{{[]int{3}, 1}, {[]int{3, 0, 2}, 1}, {[]int{3, 2}, 0}} {
		if _, err := NewMLP(tc.sizes, tc.rows); err == nil {
			t.Errorf("NewMLP(%v, %d) accepted", tc.sizes, tc.rows)
		}
	}
	m, err := NewMLP([]int{3, 2}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Step(make([]float32, 5*3), make([]uint8, 5)); err == nil {
		t.Error("5 rows accepted by a plan for 4")
	}
	if _, err := m.Step(make([]float32, 7), make([]uint8, 2)); err == nil {
		t.Error("7 values accepted for 2 rows of 3")
	}
	if _, err := m.Step(make([]float32, 6), []uint8{0, 2}); err == nil {
		t.Error("label 2 accepted for 2 classes")
	}
	for _, g := range m.Grads() {
		if g != 0 {
			t.Fatal("gradient not zero after a refused step")
		}
	}
}
