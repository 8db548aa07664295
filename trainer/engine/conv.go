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

// convForward sets z (o×(rows·h·w), channel-major) to the convolution of
// in (rows×c×h×w) by w (o×c×k×k), without bias, leaving the patches in
// col for the backward pass.
func convForward(in, w, col, z []float32, rows, c, h, wd, k, o int) {
	n, ckk := rows*h*wd, c*k*k
	im2col(in, col, rows, c, h, wd, k)
	kernels.Sgemm(false, false, o, n, ckk, 1, w, ckk, col, n, 0, z, n)
}

// convBackward takes dz, the loss gradient at the convolution's output
// (o×(rows·h·w), channel-major), and sets dw = dz·colᵀ and, if dx is not
// nil, dx = col2im(wᵀ·dz), using col, whose patches it overwrites, as
// scratch. The bias gradient is the pooling's business (poolBackward).
func convBackward(w, col, dz, dw, dx []float32, rows, c, h, wd, k, o int) {
	n, ckk := rows*h*wd, c*k*k
	kernels.Sgemm(false, true, o, ckk, n, 1, dz, n, col, n, 0, dw, ckk)
	if dx == nil {
		return
	}
	kernels.Sgemm(true, false, ckk, n, o, 1, w, ckk, dz, n, 0, col, n)
	col2im(col, dx, rows, c, h, wd, k)
}
