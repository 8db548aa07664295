package allreduce

import (
	"math"
	"slices"
	"testing"
)

// The same copies in any member order average to the same bits once
// ordered by content; summed in member order they need not.
func TestByContentOrderFree(t *testing.T) {
	// 1e8 + 1 - 1e8 is 0 in float32 in one order and 1 in another.
	a, b, c := []float32{1e8, 3}, []float32{1, 0.1}, []float32{-1e8, 7}
	w := []int{64, 64, 64}
	perms := [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	copies := [][]float32{a, b, c}
	var plain, ordered [][]float32
	for _, p := range perms {
		xs := [][]float32{copies[p[0]], copies[p[1]], copies[p[2]]}
		plain = append(plain, WeightedMean(xs, w))
		oxs, ows := byContent(xs, w)
		ordered = append(ordered, WeightedMean(oxs, ows))
	}
	differ := false
	for _, m := range plain[1:] {
		differ = differ || !slices.Equal(bitsOf(m), bitsOf(plain[0]))
	}
	if !differ {
		t.Fatal("member order never changed the mean: the test cannot tell orders apart")
	}
	for i, m := range ordered {
		if !slices.Equal(bitsOf(m), bitsOf(ordered[0])) {
			t.Fatalf("permutation %v averaged to %v by content, permutation %v to %v", perms[i], m, perms[0], ordered[0])
		}
	}
}

// Weights order first, nil copies go last, and each weight stays with
// its copy.
func TestByContentKeepsPairs(t *testing.T) {
	x1, x2, x3 := []float32{5}, []float32{-1}, []float32{2}
	xs, ws := byContent([][]float32{x1, nil, x2, x3}, []int{3, 9, 7, 3})
	want := [][]float32{x3, x1, x2, nil} // weight 3: 2 < 5 by bits; then weight 7; nil last
	for i := range want {
		if !slices.Equal(xs[i], want[i]) {
			t.Fatalf("order %v, want %v", xs, want)
		}
	}
	if !slices.Equal(ws, []int{3, 3, 7, 9}) {
		t.Fatalf("weights %v, want [3 3 7 9]", ws)
	}
}

func bitsOf(x []float32) []uint32 {
	out := make([]uint32, len(x))
	for i, v := range x {
		out[i] = math.Float32bits(v)
	}
	return out
}
