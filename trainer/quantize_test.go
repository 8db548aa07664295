package trainer

import (
	"math"
	"testing"
)

// Per-column int8 keeps every weight within half a step of its column's
// scale, and the levels times the scales are the rewritten weights.
func TestQuantizeInt8(t *testing.T) {
	tensors := []Tensor{{Name: "w", Shape: []int{3, 2}}, {Name: "b", Shape: []int{2}}}
	p := []float32{0.5, -100, -0.25, 50, 0.125, 1, 7, 8}
	orig := append([]float32(nil), p...)
	levels, scales := QuantizeInt8(p, tensors)
	if len(levels) != 1 || len(scales[0]) != 2 {
		t.Fatalf("%d matrices, %d scales", len(levels), len(scales[0]))
	}
	for k := range 6 {
		j := k % 2
		if got := float32(levels[0][k]) * scales[0][j]; got != p[k] {
			t.Fatalf("weight %d: level×scale %v, stored %v", k, got, p[k])
		}
		if math.Abs(float64(p[k]-orig[k])) > float64(scales[0][j])/2+1e-7 {
			t.Fatalf("weight %d: %v → %v, more than half a step (%v)", k, orig[k], p[k], scales[0][j])
		}
	}
	if p[6] != 7 || p[7] != 8 {
		t.Fatal("a bias was quantized")
	}
}

// A conv weight (out×in×k×k) gets one scale per output channel, so a
// channel of small weights keeps its precision beside a large one.
func TestQuantizeInt8Conv(t *testing.T) {
	tensors := []Tensor{{Name: "conv", Shape: []int{2, 1, 2, 2}}}
	p := []float32{0.01, -0.02, 0.03, 0.04, 10, -20, 30, 40}
	orig := append([]float32(nil), p...)
	_, scales := QuantizeInt8(p, tensors)
	if len(scales) != 1 || len(scales[0]) != 2 || scales[0][0] != 0.04/127 || scales[0][1] != float32(40)/127 {
		t.Fatalf("scales %v, want max|w|/127 of each output channel", scales)
	}
	for k := range 4 {
		if math.Abs(float64(p[k]-orig[k])) > 0.04/127/2+1e-9 {
			t.Errorf("small channel weight %d: %v → %v", k, orig[k], p[k])
		}
	}
}
