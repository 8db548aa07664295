package kernels

import "math"

// sqrt32 is the correctly rounded float32 square root: the float64 root
// of a float32 rounds to the same value as a direct float32 root.
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }
