package trainer

import (
	"fmt"
	"math"
)

// Schedule is a learning-rate schedule: linear warm-up over Warmup steps to
// Base, then Base held (Cosine false) or decayed along a half cosine to Min
// at step Total and held there. Every peer computes the same bits for the
// same step: the cosine is our own polynomial with explicitly rounded
// products, because math.Cos may differ in the last bit between
// architectures, and a different lr is a different update.
type Schedule struct {
	Base, Min     float32 // peak and final learning rate
	Warmup, Total int     // steps; step Warmup-1 is the last warm-up step
	Cosine        bool
}

// Validate checks that the rates are finite and non-negative and the step
// counts are consistent.
func (s Schedule) Validate() error {
	for _, f := range [2]float32{s.Base, s.Min} {
		if f < 0 || f-f != 0 {
			return fmt.Errorf("schedule: rates Base=%v Min=%v must be finite and >= 0", s.Base, s.Min)
		}
	}
	if s.Warmup < 0 {
		return fmt.Errorf("schedule: Warmup=%d, want >= 0", s.Warmup)
	}
	if s.Cosine && s.Total <= s.Warmup {
		return fmt.Errorf("schedule: Total=%d must exceed Warmup=%d for cosine decay", s.Total, s.Warmup)
	}
	return nil
}

// LR returns the learning rate for step (counted from 0; negative counts as
// 0). During warm-up it is Base·(step+1)/Warmup.
func (s Schedule) LR(step int) float32 {
	step = max(step, 0)
	if step < s.Warmup {
		return float32(float64(s.Base) * float64(step+1) / float64(s.Warmup))
	}
	if !s.Cosine {
		return s.Base
	}
	span := s.Total - s.Warmup
	if span <= 0 || step >= s.Total {
		return s.Min
	}
	frac := float64(step-s.Warmup) / float64(span)
	half := float64(0.5 * (1 + cosPi(frac))) // 0.5 is a power of two: exact
	return s.Min + float32(float64(s.Base-s.Min)*half)
}

// cosPi returns cos(π·t) for t in [0,1] to about 1e-15, using only
// correctly rounded operations with explicit rounding between multiply and
// add, so the bits are the same everywhere.
func cosPi(t float64) float64 {
	// cos(π·t) = -cos(π·(1-t)): fold to [0, 1/2], where the series converges fast.
	sign := 1.0
	if t > 0.5 {
		t, sign = 1-t, -1 // 1-t is exact here (Sterbenz)
	}
	x := float64(math.Pi * t)
	x2 := float64(x * x)
	r := cosCoef[len(cosCoef)-1]
	for k := len(cosCoef) - 2; k >= 0; k-- {
		r = float64(r*x2) + cosCoef[k]
	}
	return sign * r
}

// cosCoef[k] = (-1)^k / (2k)!, the Taylor coefficients of cos in x². Twelve
// terms: the first omitted one is below 1e-17 for x <= π/2.
var cosCoef = func() (c [12]float64) {
	c[0] = 1
	for k := 1; k < len(c); k++ {
		c[k] = -c[k-1] / float64((2*k-1)*(2*k)) // divisions only: exactly rounded
	}
	return c
}()
