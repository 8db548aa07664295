package kernels

// Packing copies a block of op(A) or op(B) into the order the micro-kernel
// reads it, so the kernel streams contiguous memory whatever the strides
// and transposes, and pads partial panels with zeros so every kernel call
// computes a full tile.

// packA writes op(A)[i0:i0+mc, p0:p0+kc]·alpha as ⌈mc/mr⌉ panels of kc×mr,
// column of the panel (mr values) per k step.
func packA(dst []float32, trans bool, a []float32, lda, i0, p0, mc, kc, mr int, alpha float32) {
	for ir := 0; ir < mc; ir += mr {
		rows := min(mr, mc-ir)
		panel := dst[ir*kc : ir*kc+kc*mr]
		if rows < mr {
			clear(panel)
		}
		if trans {
			// A is stored k×m: row p holds the mr values we want, contiguous.
			for p := range kc {
				src := a[(p0+p)*lda+i0+ir:][:rows]
				out := panel[p*mr:][:rows]
				if alpha == 1 {
					copy(out, src)
					continue
				}
				for i, v := range src {
					out[i] = alpha * v
				}
			}
			continue
		}
		if gatherPack(panel, mr, a[(i0+ir)*lda+p0:], lda, rows, kc, alpha) {
			continue
		}
		for i := range rows {
			src := a[(i0+ir+i)*lda+p0:][:kc]
			for p, v := range src {
				panel[p*mr+i] = alpha * v
			}
		}
	}
}

// packB writes op(B)[p0:p0+kc, j0:j0+nc] as ⌈nc/nr⌉ panels of kc×nr, a row
// of the panel (nr values) per k step.
func packB(dst []float32, trans bool, b []float32, ldb, p0, j0, kc, nc, nr int) {
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		panel := dst[jr*kc : jr*kc+kc*nr]
		if cols < nr {
			clear(panel)
		}
		if !trans {
			for p := range kc {
				copy(panel[p*nr:][:cols], b[(p0+p)*ldb+j0+jr:][:cols])
			}
			continue
		}
		// B is stored n×k: column j of op(B) is row j of B.
		if gatherPack(panel, nr, b[(j0+jr)*ldb+p0:], ldb, cols, kc, 1) {
			continue
		}
		for j := range cols {
			src := b[(j0+jr+j)*ldb+p0:][:kc]
			for p, v := range src {
				panel[p*nr+j] = v
			}
		}
	}
}

// gatherPack, where the CPU has gathers, sets dst[p·stride + j] =
// alpha·src[j·ld + p] for j < lanes, p < kc, and reports whether it did.
var gatherPack = func(dst []float32, stride int, src []float32, ld, lanes, kc int, alpha float32) bool { return false }
