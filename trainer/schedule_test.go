package trainer

import (
	"math"
	"testing"
)

func TestScheduleShape(t *testing.T) {
	s := Schedule{Base: 1, Min: 0.1, Warmup: 4, Total: 104, Cosine: true}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for step, want := range map[int]float64{-3: 0.25, 0: 0.25, 1: 0.5, 3: 1, 4: 1, 54: 0.55, 104: 0.1, 1000: 0.1} {
		near(t, "LR", s.LR(step), want)
	}
	prev := s.LR(4)
	for step := 5; step <= 104; step++ {
		if lr := s.LR(step); lr > prev {
			t.Fatalf("cosine LR rose at step %d", step)
		} else {
			prev = lr
		}
	}
	c := Schedule{Base: 0.5, Total: 10}
	if c.LR(0) != 0.5 || c.LR(1e6) != 0.5 {
		t.Fatal("constant schedule is not constant")
	}
	for _, bad := range []Schedule{
		{Base: -1},
		{Base: float32(math.NaN())},
		{Base: 1, Warmup: -1},
		{Base: 1, Warmup: 10, Total: 10, Cosine: true},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestCosPi(t *testing.T) {
	for i := 0; i <= 1000; i++ {
		x := float64(i) / 1000
		if d := math.Abs(cosPi(x) - math.Cos(math.Pi*x)); d > 1e-14 {
			t.Fatalf("cosPi(%v) off by %g", x, d)
		}
	}
}
