package kernels

import (
	"math"
	"runtime"
	"sync"
)

//go:generate go run gen_bf16.go

// bfloat16 products: inputs rounded to bf16 (8 bits of mantissa, fp32's
// range), products and sums in fp32. On CPUs with AVX512_BF16 each
// instruction does twice the multiply-adds of an fp32 FMA and the packed
// panels are half the bytes.

// bf16Kernel computes C[mr×nr] += Ã·B̃ for kp packed pairs of k steps: Ã
// holds per pair mr uint32s, each row's two bf16 values (the even k in
// the low half); B̃ nr uint32s, each column's two.
type bf16Kernel struct {
	name   string
	mr, nr int
	fn     func(kp int, a, b []uint32, c []float32, ldc int)
}

// activeBF16 is the bf16 kernel SgemmBF16 uses; the amd64 init puts the
// AVX512_BF16 one here when the CPU has it.
var activeBF16 = bf16Kernel{name: "generic", mr: 4, nr: 4, fn: kernBF16Generic}

// HasBF16 reports whether this CPU multiplies bf16 in hardware. Without
// it SgemmBF16 still gives bf16 results, by a slow portable kernel.
func HasBF16() bool { return activeBF16.name != "generic" }

// ToBF16 rounds x to the nearest bfloat16, ties to even; NaN stays NaN.
func ToBF16(x float32) uint16 {
	b := math.Float32bits(x)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // quiet, whatever the low bits held
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// FromBF16 widens a bfloat16 to float32 exactly.
func FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// SgemmBF16 is Sgemm with op(A) and op(B) rounded to bfloat16 (alpha is
// applied to A before rounding); products and sums are fp32, as is C.
// Elements of C are summed in pairs of k, the odd product first, in the
// same order on every kernel, so the portable kernel gives the bits the
// AVX512_BF16 one does (for inputs and sums that are not subnormal,
// which that instruction flushes to zero).
func SgemmBF16(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(true, runtime.GOMAXPROCS(0), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmBF16Serial is SgemmBF16 on the calling goroutine alone.
func SgemmBF16Serial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm(true, 1, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// kernBF16Generic is the portable bf16 kernel, 4×4.
func kernBF16Generic(kp int, a, b []uint32, c []float32, ldc int) {
	var acc [16]float32
	for p := range kp {
		ap, bp := a[p*4:p*4+4], b[p*4:p*4+4]
		for i, av := range ap {
			alo, ahi := FromBF16(uint16(av)), FromBF16(uint16(av>>16))
			for j, bv := range bp {
				s := acc[i*4+j]
				// Products of two bf16 values are exact in fp32; the
				// conversions keep Go from fusing them into the sums.
				s = s + float32(ahi*FromBF16(uint16(bv>>16)))
				s = s + float32(alo*FromBF16(uint16(bv)))
				acc[i*4+j] = s
			}
		}
	}
	for i := range 4 {
		for j := range 4 {
			c[i*ldc+j] += acc[i*4+j]
		}
	}
}

// blockKBF16 is bf16's k block: twice fp32's, for the same bytes of
// packed panels.
const blockKBF16 = 2 * blockK

// bf16Workspace holds one goroutine's packed bf16 panels.
type bf16Workspace struct {
	a, b []uint32
	tile []float32
}

var bf16Workspaces = sync.Pool{New: func() any { return new(bf16Workspace) }}

// serialBF16 is serial for bf16: the same loops, panels of k pairs.
func serialBF16(kn bf16Kernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ws := bf16Workspaces.Get().(*bf16Workspace)
	defer bf16Workspaces.Put(ws)
	mr, nr := kn.mr, kn.nr
	pairs := blockKBF16 / 2
	ws.a = growU32(ws.a, blockM*pairs)
	ws.b = growU32(ws.b, pairs*roundUp(min(n, blockN), nr))
	ws.tile = grow(ws.tile, mr*nr)
	for jc := 0; jc < n; jc += blockN {
		nc := min(blockN, n-jc)
		for pc := 0; pc < k; pc += blockKBF16 {
			kc := min(blockKBF16, k-pc)
			kp := (kc + 1) / 2
			packBF16B(ws.b, transB, b, ldb, pc, jc, kc, nc, nr)
			for ic := 0; ic < m; ic += blockM {
				mc := min(blockM, m-ic)
				packBF16A(ws.a, transA, a, lda, ic, pc, mc, kc, mr, alpha)
				for jr := 0; jr < nc; jr += nr {
					bp := ws.b[jr*kp : (jr+nr)*kp]
					cols := min(nr, nc-jr)
					for ir := 0; ir < mc; ir += mr {
						ap := ws.a[ir*kp : (ir+mr)*kp]
						rows := min(mr, mc-ir)
						off := (ic+ir)*ldc + jc + jr
						if rows == mr && cols == nr {
							kn.fn(kp, ap, bp, c[off:off+(mr-1)*ldc+nr], ldc)
							continue
						}
						t := ws.tile[:mr*nr]
						clear(t)
						kn.fn(kp, ap, bp, t, nr)
						for i := range rows {
							dst := c[off+i*ldc:][:cols]
							for j, v := range t[i*nr : i*nr+cols] {
								dst[j] += v
							}
						}
					}
				}
			}
		}
	}
}

// pairBF16 packs two values as the kernels read them: lo in the low half.
func pairBF16(lo, hi float32) uint32 { return uint32(ToBF16(lo)) | uint32(ToBF16(hi))<<16 }

// pairRowsFn sets dst[j] = pair(r0[j], r1[j]) for j < n; pairGatherFn,
// where the CPU has gathers, sets dst[p·stride + j] = pair(src[j·ld + 2p],
// src[j·ld + 2p + 1]) for j < lanes, p < kp, and reports whether it did.
var (
	pairRowsFn = func(dst []uint32, r0, r1 []float32, n int) {
		for j := range n {
			dst[j] = pairBF16(r0[j], r1[j])
		}
	}
	pairGatherFn = func(dst []uint32, stride int, src []float32, ld, lanes, kp int) bool { return false }
)

// packBF16A writes op(A)[i0:i0+mc, p0:p0+kc]·alpha as ⌈mc/mr⌉ panels of
// ⌈kc/2⌉×mr pairs; an odd kc's last pair has a zero high half.
func packBF16A(dst []uint32, trans bool, a []float32, lda, i0, p0, mc, kc, mr int, alpha float32) {
	kp, full := (kc+1)/2, kc/2
	at := func(i, q int) float32 {
		if q >= kc {
			return 0
		}
		if trans {
			return alpha * a[(p0+q)*lda+i]
		}
		return alpha * a[i*lda+p0+q]
	}
	for ir := 0; ir < mc; ir += mr {
		rows := min(mr, mc-ir)
		panel := dst[ir*kp : ir*kp+kp*mr]
		if rows < mr {
			clear(panel)
		}
		done := 0 // pairs packed by the fast paths
		switch {
		case alpha != 1:
		case trans: // A stored k×m: the pair's two rows hold the mr values
			for p := range full {
				col := i0 + ir
				pairRowsFn(panel[p*mr:], a[(p0+2*p)*lda+col:], a[(p0+2*p+1)*lda+col:], rows)
			}
			done = full
		case pairGatherFn(panel, mr, a[(i0+ir)*lda+p0:], lda, rows, full):
			done = full
		}
		for i := range rows {
			row := i0 + ir + i
			for p := done; p < kp; p++ {
				panel[p*mr+i] = pairBF16(at(row, 2*p), at(row, 2*p+1))
			}
		}
	}
}

// packBF16B writes op(B)[p0:p0+kc, j0:j0+nc] as ⌈nc/nr⌉ panels of
// ⌈kc/2⌉×nr pairs.
func packBF16B(dst []uint32, trans bool, b []float32, ldb, p0, j0, kc, nc, nr int) {
	kp, full := (kc+1)/2, kc/2
	at := func(q, j int) float32 {
		if q >= kc {
			return 0
		}
		if trans {
			return b[j*ldb+p0+q]
		}
		return b[(p0+q)*ldb+j]
	}
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		panel := dst[jr*kp : jr*kp+kp*nr]
		if cols < nr {
			clear(panel)
		}
		done := 0
		switch {
		case !trans:
			for p := range full {
				col := j0 + jr
				pairRowsFn(panel[p*nr:], b[(p0+2*p)*ldb+col:], b[(p0+2*p+1)*ldb+col:], cols)
			}
			done = full
		case pairGatherFn(panel, nr, b[(j0+jr)*ldb+p0:], ldb, cols, full):
			done = full
		}
		for p := done; p < kp; p++ {
			out := panel[p*nr:][:cols]
			for j := range out {
				col := j0 + jr + j
				out[j] = pairBF16(at(2*p, col), at(2*p+1, col))
			}
		}
	}
}

func growU32(s []uint32, n int) []uint32 {
	if cap(s) < n {
		return make([]uint32, n)
	}
	return s[:n]
}
