package trainer

import (
	"math"
	"testing"
)

func TestScheduleShape(t *testing.T) {
	s := Schedule{Base: 1, Min: 0.1, Warmup: 4, Total: 104, Decay: DecayCosine}
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
		{Base: 1, Warmup: 10, Total: 10, Decay: DecayCosine},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// Linear and step decay: the values users expect at the landmarks, and
// unknown names refused.
func TestScheduleLinearAndStep(t *testing.T) {
	lin := Schedule{Base: 1, Min: 0.1, Warmup: 4, Total: 104, Decay: DecayLinear}
	for step, want := range map[int]float64{0: 0.25, 4: 1, 54: 0.55, 79: 0.325, 104: 0.1, 500: 0.1} {
		near(t, "linear LR", lin.LR(step), want)
	}
	st := Schedule{Base: 1, Min: 0.5, Warmup: 4, Total: 104, Decay: DecayStep}
	for step, want := range map[int]float64{3: 1, 53: 1, 54: 0.1, 78: 0.1, 79: 0.01, 5000: 0.01} {
		near(t, "step LR", st.LR(step), want)
	}
	for _, name := range []string{"cosine", "linear", "step", "constant", ""} {
		if _, err := ParseDecay(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	if _, err := ParseDecay("exponential"); err == nil {
		t.Error("an unknown decay was accepted")
	}
	if (Schedule{Base: 1, Decay: "exponential"}).Validate() == nil {
		t.Error("a schedule with an unknown decay validated")
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
