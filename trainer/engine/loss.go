package engine

import (
	"fmt"
	"math"
)

// softmaxCrossEntropy returns the mean over rows of −log softmax(z)[y] and
// writes its gradient with respect to z into dz: (softmax − onehot)/rows.
// Each row is shifted by its maximum before exp, and the loss summed in
// float64. A label ≥ classes is an error (labels come from data files).
func softmaxCrossEntropy(z, dz []float32, y []uint8, rows, classes int) (float32, error) {
	inv := 1 / float32(rows)
	var total float64
	for r := range rows {
		c := int(y[r])
		if c >= classes {
			return 0, fmt.Errorf("engine: label %d at row %d out of range 0..%d", c, r, classes-1)
		}
		zr, dr := z[r*classes:(r+1)*classes], dz[r*classes:(r+1)*classes]
		m := zr[0]
		for _, v := range zr[1:] {
			m = max(m, v)
		}
		var s float32
		for j, v := range zr {
			e := float32(math.Exp(float64(v - m)))
			dr[j] = e
			s += e
		}
		total += float64(m-zr[c]) + math.Log(float64(s))
		scale := inv / s
		for j := range dr {
			dr[j] *= scale
		}
		dr[c] -= inv
	}
	return float32(total / float64(rows)), nil
}
