package engine

import "github.com/swarmtrain/swarmtrain/trainer/kernels"

// A convolution here is k×k (k odd), stride 1, zero "same" padding of k/2
// on every side, over images stored NCHW: rows×c×h×w, row-major. It runs
// as one GEMM over the whole batch: im2col lays the patches out as a
// (c·k·k)×(rows·h·w) matrix, so that the out×(c·k·k) weight (PyTorch's
// out×in×k×k layout, read as a matrix) times it gives the output
// channel-major, out×(rows·h·w). The pooling that follows reads that
// layout and writes NCHW again.

// im2colRows is im2col for the patch rows q = (ci·k+i)·k+j in lo..hi−1:
// it sets col[q][r·h·w + y·w + x] = in[r][ci][y+i−k/2][x+j−k/2], zero where
// that falls outside the image.
//
// For one (ci, i, j) and image, the values are the image's channel ci read
// at a fixed flat offset (i−k/2)·w + j−k/2, so one contiguous copy moves
// them all; what it reads from outside the image (rows above or below,
// and the |j−k/2| columns that wrap around to the neighbouring row) is
// then zeroed.
func im2colRows(in, col []float32, rows, c, h, w, k, lo, hi int) {
	p, hw := k/2, h*w
	n := rows * hw
	for q := lo; q < hi; q++ {
		ci, i, j := q/(k*k), q/k%k, q%k
		dst := col[q*n:][:n]
		lo, hi, off := shiftSpan(h, w, i-p, j-p)
		for r := range rows {
			src := in[(r*c+ci)*hw:][:hw]
			d := dst[r*hw:][:hw]
			clear(d[:lo])
			copy(d[lo:hi], src[lo+off:hi+off])
			clear(d[hi:])
			zeroWrapped(d, lo, hi, w, j-p)
		}
	}
}

// im2colLoop is im2col over patch rows, for split.
type im2colLoop struct {
	in, col          []float32
	rows, c, h, w, k int
}

func (l *im2colLoop) run(lo, hi int) { im2colRows(l.in, l.col, l.rows, l.c, l.h, l.w, l.k, lo, hi) }

// shiftSpan returns the flat span [lo, hi) of an h×w output whose source
// pixel, at flat offset off = di·w + dj, lies in rows 0..h−1 of the
// image (columns that wrap to the next or previous row included).
func shiftSpan(h, w, di, dj int) (lo, hi, off int) {
	off = di*w + dj
	lo = max(0, -di) * w
	hi = min(h, h-di) * w
	if hi <= lo {
		return 0, 0, off
	}
	// A wrapped column of the first or last row may reach past the image.
	lo, hi = max(lo, -off), min(hi, h*w-off)
	return lo, max(lo, hi), off
}

// zeroWrapped zeroes, in d[lo:hi], the columns whose source wrapped to a
// neighbouring row: the last dj of each row for dj > 0, the first −dj for
// dj < 0.
func zeroWrapped(d []float32, lo, hi, w, dj int) {
	if dj == 0 || lo >= hi {
		return
	}
	// One or two values a row: stores, not a clear call each.
	x0, x1 := max(0, w-dj), w
	if dj < 0 {
		x0, x1 = 0, min(w, -dj)
	}
	for row := lo / w * w; row < hi; row += w {
		r := d[row+x0 : row+x1]
		for x := range r {
			r[x] = 0
		}
	}
}

// col2imChannels is col2im, im2col's adjoint, for input channels
// lo..hi−1 (whose pixels no other channel's patches touch): it sets dx
// (rows×c×h×w) to the sum, over every patch position that read a pixel,
// of dcol there. It zeroes the wrapped columns of dcol, which it uses as
// scratch, and adds each image's span in one pass.
func col2imChannels(dcol, dx []float32, rows, c, h, w, k, lo, hi int) {
	p, hw := k/2, h*w
	n := rows * hw
	for ci := lo; ci < hi; ci++ {
		for r := range rows {
			clear(dx[(r*c+ci)*hw:][:hw])
		}
		for i := range k {
			for j := range k {
				src := dcol[((ci*k+i)*k+j)*n:][:n]
				lo, hi, off := shiftSpan(h, w, i-p, j-p)
				if lo >= hi {
					continue
				}
				for r := range rows {
					s := src[r*hw:][:hw]
					zeroWrapped(s, lo, hi, w, j-p)
					d := dx[(r*c+ci)*hw:][:hw]
					kernels.Axpy(d[lo+off:hi+off], s[lo:hi], 1) // 1·v is exact: a plain sum
				}
			}
		}
	}
}

// col2imLoop is col2im over input channels, for split.
type col2imLoop struct {
	dcol, dx         []float32
	rows, c, h, w, k int
}

func (l *col2imLoop) run(lo, hi int) {
	col2imChannels(l.dcol, l.dx, l.rows, l.c, l.h, l.w, l.k, lo, hi)
}

// convLoops are a convolution's split loops, kept in its plan.
type convLoops struct {
	im  im2colLoop
	c2i col2imLoop
	mul gemm // the convolution's matrix products (nil: kernels.Sgemm)
	// serial keeps the loops on the calling goroutine: a CNN shard,
	// which runs beside the other shards, one per thread.
	serial bool
}

// gemm is the convolution's matrix product.
func (l *convLoops) gemm() gemm {
	if l.mul == nil {
		return kernels.Sgemm
	}
	return l.mul
}

// patches lays out the patches of rows images of in into col, split over
// patch rows.
func (l *convLoops) patches(in, col []float32, rows, c, h, w, k int) {
	l.im = im2colLoop{in: in, col: col, rows: rows, c: c, h: h, w: w, k: k}
	splitUnless(l.serial, &l.im, c*k*k)
	l.im = im2colLoop{} // hold no buffers
}

// unpatch is col2im split over input channels.
func (l *convLoops) unpatch(dcol, dx []float32, rows, c, h, w, k int) {
	l.c2i = col2imLoop{dcol: dcol, dx: dx, rows: rows, c: c, h: h, w: w, k: k}
	splitUnless(l.serial, &l.c2i, c)
	l.c2i = col2imLoop{}
}

// patchFloats is the size of one im2col buffer, in floats, that a
// convolution aims for: the batch is convolved a group of images at a
// time so that the patches im2col writes are still in cache (1 MiB of L2
// on the Zen 5 this was tuned on) when sgemm packs them, and again in the
// backward pass, instead of streaming the whole batch's (20 MB for the
// default CNN's second block) through memory five times.
const patchFloats = 128 << 10

// convGroup is how many images of c×h×w go into one im2col buffer of a
// k×k convolution, at most rows.
func convGroup(rows, c, h, w, k int) int {
	return max(1, min(rows, patchFloats/(c*k*k*h*w)))
}

// convForward sets z (o×(rows·h·w), channel-major) to the convolution of
// in (rows×c×h×w) by w (o×c×k×k), without bias, g images at a time
// through col (c·k·k × g·h·w).
func convForward(l *convLoops, in, w, col, z []float32, rows, c, h, wd, k, o, g int) {
	hw, ckk := h*wd, c*k*k
	n := rows * hw
	for r0 := 0; r0 < rows; r0 += g {
		gn := min(g, rows-r0)
		l.patches(in[r0*c*hw:], col, gn, c, h, wd, k)
		l.gemm()(false, false, o, gn*hw, ckk, 1, w, ckk, col, gn*hw, 0, z[r0*hw:], n)
	}
}

// convBackward takes dz, the loss gradient at the convolution's output
// (o×(rows·h·w), channel-major), and sets dw = dz·patchesᵀ and, if dx is
// not nil, dx = col2im(wᵀ·dz), g images at a time: it lays out each
// group's patches from in again (cheaper than keeping the batch's) in
// col, whose values it then overwrites with their gradient. The bias
// gradient is the pooling's business (poolBackward).
func convBackward(l *convLoops, in, w, col, dz, dw, dx []float32, rows, c, h, wd, k, o, g int) {
	hw, ckk := h*wd, c*k*k
	n := rows * hw
	for r0 := 0; r0 < rows; r0 += g {
		gn := min(g, rows-r0)
		l.patches(in[r0*c*hw:], col, gn, c, h, wd, k)
		beta := float32(1)
		if r0 == 0 {
			beta = 0
		}
		l.gemm()(false, true, o, ckk, gn*hw, 1, dz[r0*hw:], n, col, gn*hw, beta, dw, ckk)
		if dx == nil {
			continue
		}
		l.gemm()(true, false, ckk, gn*hw, o, 1, w, ckk, dz[r0*hw:], n, 0, col, gn*hw)
		l.unpatch(col, dx[r0*c*hw:], gn, c, h, wd, k)
	}
}
