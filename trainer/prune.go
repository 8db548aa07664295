package trainer

import (
	"fmt"
	"math"
	"slices"
)

// Magnitude pruning of a trained model, one of the post-training steps of
// `swarmtrain export` (int8 quantization, in quantize.go, is the other).
// Biases are left alone: they are few, and zeroing them costs accuracy for
// nothing.

// PruneMagnitude zeroes the smallest-magnitude fraction sparsity of the
// weights of every matrix (tensors of two or more dimensions), ranked
// across all of them (global pruning, as torch.nn.utils.prune's
// global_unstructured), and returns how many it zeroed.
func PruneMagnitude(params []float32, tensors []Tensor, sparsity float64) (int, error) {
	if !(sparsity >= 0 && sparsity < 1) {
		return 0, fmt.Errorf("prune: sparsity %v, want [0, 1)", sparsity)
	}
	var mags []float32
	eachMatrix(params, tensors, func(w []float32, _ Tensor) {
		for _, x := range w {
			mags = append(mags, float32(math.Abs(float64(x))))
		}
	})
	k := int(sparsity * float64(len(mags)))
	if k == 0 {
		return 0, nil
	}
	slices.Sort(mags)
	cut := mags[k-1] // zero everything at or below the k-th smallest magnitude…
	zeroed := 0
	eachMatrix(params, tensors, func(w []float32, _ Tensor) {
		for i, x := range w {
			if zeroed < k && float32(math.Abs(float64(x))) <= cut { // …but no more than k (ties)
				w[i] = 0
				zeroed++
			}
		}
	})
	return zeroed, nil
}
