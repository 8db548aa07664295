package engine

// poolForward is bias, ReLU and 2×2 max pooling (stride 2, an odd last
// row or column dropped) fused into one pass: z is a convolution's output,
// channel-major (o×rows×h×w), and out (rows×o×h/2×w/2, NCHW) gets
// max(0, b[ch] + the window's maximum), which is the pool of the ReLU of
// z+b because both are monotone. idx keeps, for each output, the flat
// index in z of its window's maximum (the first of equals, in row-major
// order) for the backward pass.
func poolForward(z, b, out []float32, idx []int32, rows, o, h, w int) {
	ph, pw := h/2, w/2
	for ch := range o {
		bias := b[ch]
		for r := range rows {
			base := (ch*rows + r) * h * w
			dst := out[(r*o+ch)*ph*pw:][:ph*pw]
			di := idx[(r*o+ch)*ph*pw:][:ph*pw]
			for py := range ph {
				top := z[base+2*py*w:][:w]
				bot := z[base+(2*py+1)*w:][:w]
				for px := range pw {
					x := 2 * px
					m, at := top[x], base+2*py*w+x
					if v := top[x+1]; v > m {
						m, at = v, at+1
					}
					if v := bot[x]; v > m {
						m, at = v, base+(2*py+1)*w+x
					}
					if v := bot[x+1]; v > m {
						m, at = v, base+(2*py+1)*w+x+1
					}
					dst[py*pw+px] = max(0, m+bias)
					di[py*pw+px] = int32(at)
				}
			}
		}
	}
}

// poolBackward takes dout, the loss gradient at poolForward's out, and
// routes it back: dz (o×rows×h×w) gets it at each window's maximum where
// the ReLU passed (out > 0; its derivative at 0 is taken as 0, as
// gorgonia does), zero elsewhere, and db[ch] its sum over channel ch.
func poolBackward(out, dout []float32, idx []int32, dz, db []float32, rows, o, h, w int) {
	clear(dz[:o*rows*h*w])
	ph, pw := h/2, w/2
	for ch := range o {
		var s float32
		for r := range rows {
			at := (r*o + ch) * ph * pw
			y, dy, di := out[at:][:ph*pw], dout[at:][:ph*pw], idx[at:][:ph*pw]
			for i, v := range y {
				if v > 0 {
					dz[di[i]] = dy[i]
					s += dy[i]
				}
			}
		}
		db[ch] = s
	}
}
