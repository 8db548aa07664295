package engine

// poolForward is bias, ReLU and 2×2 max pooling (stride 2, an odd last
// row or column dropped) fused into one pass: z is a convolution's output,
// channel-major (o×rows×h×w), and out (rows×o×h/2×w/2, NCHW) gets
// max(0, b[ch] + the window's maximum), which is the pool of the ReLU of
// z+b because both are monotone. idx keeps, for each output, the flat
// index in z of its window's maximum (the first of equals, in row-major
// order) for the backward pass. It does channels lo..hi−1.
func poolForward(z, b, out []float32, idx []int32, rows, o, h, w, lo, hi int) {
	ph, pw := h/2, w/2
	for ch := lo; ch < hi; ch++ {
		bias := b[ch]
		for r := range rows {
			base := (ch*rows + r) * h * w
			dst := out[(r*o+ch)*ph*pw:][:ph*pw]
			di := idx[(r*o+ch)*ph*pw:][:ph*pw]
			for py := range ph {
				top := z[base+2*py*w:][:w]
				bot := z[base+(2*py+1)*w:][:w]
				for px := range pw {
					// Branch-free: on random data which of the four wins is
					// a coin toss, and mispredicted branches cost more than
					// the arithmetic. k is the winner's place in the window.
					x := 2 * px
					v0, v1, v2, v3 := top[x], top[x+1], bot[x], bot[x+1]
					m1, m2 := max(v0, v1), max(v2, v3)
					k1, k2 := sel(v1 > v0, 1, 0), sel(v3 > v2, 3, 2)
					k := sel(m2 > m1, k2, k1)
					dst[py*pw+px] = max(0, max(m1, m2)+bias)
					di[py*pw+px] = int32(base + (2*py+(k>>1))*w + x + (k & 1))
				}
			}
		}
	}
}

// poolBackward takes dout, the loss gradient at poolForward's out, and
// routes it back: dz (o×rows×h×w) gets it at each window's maximum where
// the ReLU passed (out > 0; its derivative at 0 is taken as 0, as
// gorgonia does), zero elsewhere, and db[ch] its sum over channel ch. It
// does channels lo..hi−1.
func poolBackward(out, dout []float32, idx []int32, dz, db []float32, rows, o, h, w, lo, hi int) {
	ph, pw := h/2, w/2
	for ch := lo; ch < hi; ch++ {
		clear(dz[ch*rows*h*w:][:rows*h*w])
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

// sel is c ? a : b, which the compiler makes a conditional move.
func sel(c bool, a, b int) int {
	if c {
		return a
	}
	return b
}

// poolLoop is poolForward or poolBackward over channels, for split.
type poolLoop struct {
	serial              bool // see convLoops.serial
	back                bool
	z, b, out, dout, dz []float32
	idx                 []int32
	rows, o, h, w       int
}

func (l *poolLoop) run(lo, hi int) {
	if l.back {
		poolBackward(l.out, l.dout, l.idx, l.dz, l.b, l.rows, l.o, l.h, l.w, lo, hi)
		return
	}
	poolForward(l.z, l.b, l.out, l.idx, l.rows, l.o, l.h, l.w, lo, hi)
}

// pool is poolForward split over channels.
func (l *poolLoop) pool(z, b, out []float32, idx []int32, rows, o, h, w int) {
	serial := l.serial
	*l = poolLoop{serial: serial, z: z, b: b, out: out, idx: idx, rows: rows, o: o, h: h, w: w}
	splitUnless(serial, l, o)
	*l = poolLoop{serial: serial}
}

// unpool is poolBackward split over channels; db is the bias gradient.
func (l *poolLoop) unpool(out, dout []float32, idx []int32, dz, db []float32, rows, o, h, w int) {
	serial := l.serial
	*l = poolLoop{serial: serial, back: true, out: out, dout: dout, idx: idx, dz: dz, b: db, rows: rows, o: o, h: h, w: w}
	splitUnless(serial, l, o)
	*l = poolLoop{serial: serial}
}
