package trainer

import (
	"fmt"
	"math"
)

// Schedule is a learning-rate schedule: linear warm-up over Warmup steps to
// Base, then Decay from Base over the steps up to Total. Every peer
// computes the same bits for the same step: the cosine is our own
// polynomial with explicitly rounded products, because math.Cos may differ
// in the last bit between architectures, and a different lr is a
// different update.
type Schedule struct {
	Base, Min     float32 // peak and final learning rate
	Warmup, Total int     // steps; step Warmup-1 is the last warm-up step
	Decay         Decay
}

// Decay is the shape of a schedule after warm-up.
type Decay string

const (
	DecayConstant Decay = ""       // Base held
	DecayCosine   Decay = "cosine" // half cosine from Base to Min at Total, then Min
	DecayLinear   Decay = "linear" // straight line from Base to Min at Total, then Min
	// DecayStep is the classic step schedule: Base, then Base/10 from half
	// of the decay span and Base/100 from three quarters (Min unused).
	DecayStep Decay = "step"
)

// ParseDecay reads a decay name; "constant" is DecayConstant.
func ParseDecay(s string) (Decay, error) {
	switch d := Decay(s); d {
	case DecayCosine, DecayLinear, DecayStep:
		return d, nil
	case "constant", DecayConstant:
		return DecayConstant, nil
	}
	return "", fmt.Errorf("schedule %q: want cosine, linear, step or constant", s)
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
	if _, err := ParseDecay(string(s.Decay)); err != nil {
		return err
	}
	if s.Decay != DecayConstant && s.Total <= s.Warmup {
		return fmt.Errorf("schedule: Total=%d must exceed Warmup=%d for %s decay", s.Total, s.Warmup, s.Decay)
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
	span := s.Total - s.Warmup
	frac := float64(step-s.Warmup) / float64(max(span, 1))
	switch s.Decay {
	case DecayConstant:
		return s.Base
	case DecayStep:
		switch {
		case frac >= stepDecayAt2:
			return float32(float64(s.Base) / stepDecay2)
		case frac >= stepDecayAt1:
			return float32(float64(s.Base) / stepDecay1)
		}
		return s.Base
	}
	if span <= 0 || step >= s.Total {
		return s.Min
	}
	if s.Decay == DecayLinear {
		return s.Min + float32(float64(s.Base-s.Min)*(1-frac))
	}
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
