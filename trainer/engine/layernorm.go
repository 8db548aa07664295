package engine

import "math"

// layerNormForward normalises each of rows rows of x (width d) to zero
// mean and unit variance, y = x̂·g + b, as trainer's gorgonia layer norm
// does (variance over d, eps inside the square root). It keeps x̂ and
// 1/σ per row for the backward pass; y may alias x.
func layerNormForward(x, g, b, y, xhat, rstd []float32, rows, d int, eps float32) {
	inv := 1 / float32(d)
	for r := range rows {
		xr, hr, yr := x[r*d:(r+1)*d], xhat[r*d:(r+1)*d], y[r*d:(r+1)*d]
		var mean float32
		for _, v := range xr {
			mean += v
		}
		mean *= inv
		var vr float32
		for j, v := range xr {
			c := v - mean
			hr[j] = c
			vr += c * c
		}
		s := float32(1 / math.Sqrt(float64(vr*inv+eps)))
		rstd[r] = s
		for j, c := range hr {
			h := c * s
			hr[j] = h
			yr[j] = h*g[j] + b[j]
		}
	}
}

// layerNormBackward sets dx from dy, the gradient at the output, and adds
// the gains' and shifts' gradients into dg and db:
// dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))/σ with ĝ = dy·g. dx may alias dy.
func layerNormBackward(dy, xhat, rstd, g, dx, dg, db []float32, rows, d int) {
	layerNormParamGrads(dy, xhat, dg, db, rows, d)
	layerNormBackwardX(dy, xhat, rstd, g, dx, rows, d)
}

// layerNormParamGrads adds Σ rows dy·x̂ into dg and Σ rows dy into db.
func layerNormParamGrads(dy, xhat, dg, db []float32, rows, d int) {
	dg, db = dg[:d], db[:d]
	for r := range rows {
		hr := xhat[r*d : (r+1)*d]
		for j, v := range dy[r*d : (r+1)*d] {
			dg[j] += v * hr[j]
			db[j] += v
		}
	}
}

// layerNormBackwardX is layerNormBackward's dx, row by row, so that rows
// can be split across goroutines.
func layerNormBackwardX(dy, xhat, rstd, g, dx []float32, rows, d int) {
	inv := 1 / float32(d)
	for r := range rows {
		dr, hr, xr := dy[r*d:(r+1)*d], xhat[r*d:(r+1)*d], dx[r*d:(r+1)*d]
		var sg, sgh float32
		for j, v := range dr {
			gh := v * g[j]
			sg += gh
			sgh += gh * hr[j]
		}
		sg *= inv
		sgh *= inv
		s := rstd[r]
		for j, v := range dr {
			xr[j] = (v*g[j] - sg - hr[j]*sgh) * s
		}
	}
}

// lnJob splits a layer norm's forward, or its backward's dx, over rows.
type lnJob struct {
	x, g, b, y, xhat, rstd []float32 // forward: x → y; backward: x is dy, y is dx
	d                      int
	eps                    float32
	backward               bool
}

func (j *lnJob) run(lo, hi int) {
	d := j.d
	if j.backward {
		layerNormBackwardX(j.x[lo*d:hi*d], j.xhat[lo*d:hi*d], j.rstd[lo:hi], j.g, j.y[lo*d:hi*d], hi-lo, d)
		return
	}
	layerNormForward(j.x[lo*d:hi*d], j.g, j.b, j.y[lo*d:hi*d], j.xhat[lo*d:hi*d], j.rstd[lo:hi], hi-lo, d, j.eps)
}
