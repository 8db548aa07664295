package trainer

import "math"

// ClipGlobalNorm scales g so its L2 norm over all parameters is at most
// maxNorm (PyTorch's clip_grad_norm_, unlike gorgonia's WithClip, which
// clamps each element and bends the direction). It returns the norm
// before clipping; maxNorm <= 0 means off, and then it reads nothing and
// returns 0. The sum runs in float64 with every product rounded
// explicitly, so all replicas clip the same average to the same bits.
func ClipGlobalNorm(g []float32, maxNorm float32) float64 {
	if maxNorm <= 0 {
		return 0
	}
	var s float64
	for _, x := range g {
		s += float64(float64(x) * float64(x))
	}
	norm := math.Sqrt(s)
	if !(norm > float64(maxNorm)) {
		return norm
	}
	scale := float32(float64(maxNorm) / norm)
	for i, x := range g {
		g[i] = float32(x * scale)
	}
	return norm
}
