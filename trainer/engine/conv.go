package engine

import "github.com/swarmtrain/swarmtrain/trainer/kernels"

// A convolution here is k×k (k odd), stride 1, zero "same" padding of k/2
// on every side, over images stored NCHW: rows×c×h×w, row-major. It runs
// as one GEMM over the whole batch: im2col lays the patches out as a
// (c·k·k)×(rows·h·w) matrix, so that the out×(c·k·k) weight (PyTorch's
// out×in×k×k layout, read as a matrix) times it gives the output
// channel-major, out×(rows·h·w). The pooling that follows reads that
// layout and writes NCHW again.

// im2col sets col[(ci·k+i)·k+j][r·h·w + y·w + x] = in[r][ci][y+i−k/2][x+j−k/2],
// zero where that falls outside the image.
func im2col(in, col []float32, rows, c, h, w, k int) {
	p, hw := k/2, h*w
	n := rows * hw
	for ci := range c {
		for i := range k {
			for j := range k {
				dst := col[((ci*k+i)*k+j)*n:][:n]
				dx := j - p
				lo, hi := max(0, -dx), min(w, w-dx) // columns x whose source x+dx exists
				for r := range rows {
					src := in[(r*c+ci)*hw:][:hw]
					d := dst[r*hw:][:hw]
					for y := range h {
						row := d[y*w:][:w]
						sy := y + i - p
						if sy < 0 || sy >= h || lo >= hi {
							clear(row)
							continue
						}
						s := src[sy*w:][:w]
						clear(row[:lo])
						copy(row[lo:hi], s[lo+dx:hi+dx])
						clear(row[hi:])
					}
				}
			}
		}
	}
}

// col2im is im2col's adjoint: it sets dx (rows×c×h×w) to the sum, over
// every patch position that read a pixel, of dcol there.
func col2im(dcol, dx []float32, rows, c, h, w, k int) {
	p, hw := k/2, h*w
	n := rows * hw
	clear(dx[:rows*c*hw])
	for ci := range c {
		for i := range k {
			for j := range k {
				src := dcol[((ci*k+i)*k+j)*n:][:n]
				dxo := j - p
				lo, hi := max(0, -dxo), min(w, w-dxo)
				if lo >= hi {
					continue
				}
				for r := range rows {
					d := dx[(r*c+ci)*hw:][:hw]
					s := src[r*hw:][:hw]
					for y := max(0, p-i); y < min(h, h+p-i); y++ {
						addTo(d[(y+i-p)*w+lo+dxo:][:hi-lo], s[y*w+lo:][:hi-lo])
					}
				}
			}
		}
	}
}

// addTo adds x into dst (of x's length).
func addTo(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] += v
	}
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
func convForward(in, w, col, z []float32, rows, c, h, wd, k, o, g int) {
	hw, ckk := h*wd, c*k*k
	n := rows * hw
	for r0 := 0; r0 < rows; r0 += g {
		gn := min(g, rows-r0)
		im2col(in[r0*c*hw:], col, gn, c, h, wd, k)
		kernels.Sgemm(false, false, o, gn*hw, ckk, 1, w, ckk, col, gn*hw, 0, z[r0*hw:], n)
	}
}

// convBackward takes dz, the loss gradient at the convolution's output
// (o×(rows·h·w), channel-major), and sets dw = dz·patchesᵀ and, if dx is
// not nil, dx = col2im(wᵀ·dz), g images at a time: it lays out each
// group's patches from in again (cheaper than keeping the batch's) in
// col, whose values it then overwrites with their gradient. The bias
// gradient is the pooling's business (poolBackward).
func convBackward(in, w, col, dz, dw, dx []float32, rows, c, h, wd, k, o, g int) {
	hw, ckk := h*wd, c*k*k
	n := rows * hw
	for r0 := 0; r0 < rows; r0 += g {
		gn := min(g, rows-r0)
		im2col(in[r0*c*hw:], col, gn, c, h, wd, k)
		beta := float32(1)
		if r0 == 0 {
			beta = 0
		}
		kernels.Sgemm(false, true, o, ckk, gn*hw, 1, dz[r0*hw:], n, col, gn*hw, beta, dw, ckk)
		if dx == nil {
			continue
		}
		kernels.Sgemm(true, false, ckk, gn*hw, o, 1, w, ckk, dz[r0*hw:], n, 0, col, gn*hw)
		col2im(col, dx[r0*c*hw:], gn, c, h, wd, k)
	}
}
