package engine

import "math"

// maskedCrossEntropy is Σ over rows r with want[r] ≥ 0 of
// −log softmax(z_r)[want[r]], divided by count (the scored rows); it
// writes the gradient with respect to z into dz, zero on unscored rows.
// With nothing scored the loss and gradient are 0. Labels are checked by
// the caller.
func maskedCrossEntropy(z, dz []float32, want []int, classes, count int) float32 {
	losses := make([]float64, len(want))
	ceRows(z, dz, want, classes, count, losses)
	return sumLosses(losses, count)
}

// sumLosses is the mean of the per-row losses over count scored rows,
// summed in row order whatever the split.
func sumLosses(losses []float64, count int) float32 {
	if count == 0 {
		return 0
	}
	var total float64
	for _, l := range losses {
		total += l
	}
	return float32(total / float64(count))
}

// ceRows is maskedCrossEntropy's work on a range of rows: each row's loss
// into losses, its gradient into dz.
func ceRows(z, dz []float32, want []int, classes, count int, losses []float64) {
	inv := 1 / float32(max(count, 1))
	for r, w := range want {
		zr, dr := z[r*classes:(r+1)*classes], dz[r*classes:(r+1)*classes]
		losses[r] = 0
		if w < 0 {
			clear(dr)
			continue
		}
		m := zr[0]
		for _, v := range zr[1:] {
			m = max(m, v)
		}
		copy(dr, zr)
		s := expSum(dr, m)
		losses[r] = float64(m-zr[w]) + math.Log(float64(s))
		scale := inv / s
		for j := range dr {
			dr[j] *= scale
		}
		dr[w] -= inv
	}
}

// ceJob splits ceRows over rows.
type ceJob struct {
	z, dz          []float32
	want           []int
	classes, count int
	losses         []float64
}

func (j *ceJob) run(lo, hi int) {
	c := j.classes
	ceRows(j.z[lo*c:hi*c], j.dz[lo*c:hi*c], j.want[lo:hi], c, j.count, j.losses[lo:hi])
}
