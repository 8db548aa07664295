package allreduce

import (
	"cmp"
	"math"
	"slices"
)

// byContent returns xs and weights reordered into an order set by the
// copies themselves: by weight, then by their values' bits compared
// lexicographically; left-out (nil) copies last. Float addition is not
// associative, so the member order a mean is summed in shows in its last
// bits, and members are ordered by peer ID, new every run. Ordered by
// content, the same copies sum to the same bits whoever sent them: a
// deterministic run (AveragerConfig.ContentOrder) reproduces its averages
// across runs. Copies of equal content may swap without changing a bit.
// Comparing stops at the first value that differs, so it costs a few
// comparisons per member, not a pass over the copies.
func byContent(xs [][]float32, weights []int) ([][]float32, []int) {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		xa, xb := xs[a], xs[b]
		if (xa == nil) != (xb == nil) {
			if xa == nil {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(weights[a], weights[b]); c != 0 {
			return c
		}
		for e := range min(len(xa), len(xb)) {
			if c := cmp.Compare(math.Float32bits(xa[e]), math.Float32bits(xb[e])); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(xa), len(xb))
	})
	oxs, ows := make([][]float32, len(xs)), make([]int, len(xs))
	for i, j := range idx {
		oxs[i], ows[i] = xs[j], weights[j]
	}
	return oxs, ows
}
