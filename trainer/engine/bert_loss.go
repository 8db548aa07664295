package engine

import "math"

// maskedCrossEntropy is Σ over rows r with want[r] ≥ 0 of
// −log softmax(z_r)[want[r]], divided by count (the scored rows); it
// writes the gradient with respect to z into dz, zero on unscored rows.
// With nothing scored the loss and gradient are 0. Labels are checked by
// the caller.
func maskedCrossEntropy(z, dz []float32, want []int, classes, count int) float32 {
	if count == 0 {
		clear(dz[:len(want)*classes])
		return 0
	}
	inv := 1 / float32(count)
	var total float64
	for r, w := range want {
		zr, dr := z[r*classes:(r+1)*classes], dz[r*classes:(r+1)*classes]
		if w < 0 {
			clear(dr)
			continue
		}
		m := zr[0]
		for _, v := range zr[1:] {
			m = max(m, v)
		}
		var s float32
		for j, v := range zr {
			e := exp32(v - m)
			dr[j] = e
			s += e
		}
		total += float64(m-zr[w]) + math.Log(float64(s))
		scale := inv / s
		for j := range dr {
			dr[j] *= scale
		}
		dr[w] -= inv
	}
	return float32(total / float64(count))
}
