package trainer

import (
	"math"
	"testing"
)

// Clipping keeps the direction and brings the global norm to the bound;
// gradients already inside it are left alone, bit for bit.
func TestClipGlobalNorm(t *testing.T) {
	g := []float32{3, -4, 0, 12} // norm 13
	if n := ClipGlobalNorm(g, 6.5); math.Abs(n-13) > 1e-12 {
		t.Fatalf("reported norm %v, want 13", n)
	}
	want := []float32{1.5, -2, 0, 6}
	for i := range g {
		if math.Abs(float64(g[i]-want[i])) > 1e-6 {
			t.Fatalf("clipped %v, want %v", g, want)
		}
	}
	small := []float32{0.1, 0.2}
	before := append([]float32(nil), small...)
	ClipGlobalNorm(small, 1)
	if small[0] != before[0] || small[1] != before[1] {
		t.Fatalf("a gradient inside the bound changed: %v", small)
	}
	if ClipGlobalNorm(small, 0); small[0] != before[0] {
		t.Fatal("max norm 0 (off) changed the gradient")
	}
}
