//go:build amd64 && !purego

package compression

import (
	"encoding/binary"

	"golang.org/x/sys/cpu"
)

// F16C (VCVTPS2PH/VCVTPH2PS) converts 8 values an instruction. It needs
// the CPU flag and an OS that saves the YMM registers (HasAVX).
var useF16C = cpu.X86.HasAVX && cpuidF16C()

//go:noescape
func cpuidF16C() bool

//go:noescape
func halvesFromFloats(dst *byte, src *float32, n int)

//go:noescape
func floatsFromHalves(dst *float32, src *byte, n int)

// encodeHalvesFast converts a prefix of src (a multiple of 16 values)
// into out and returns its length. The hardware rounds like
// HalfFromFloat32 except that finite values past the half range become
// Inf where we saturate, so lanes that came out Inf are redone.
// It also reports whether any lane came out Inf or NaN: only then can
// the prefix hold a non-finite input.
func encodeHalvesFast(out []byte, src []float32) (int, bool) {
	n := len(src) &^ 15
	if !useF16C || n == 0 {
		return 0, false
	}
	halvesFromFloats(&out[0], &src[0], n)
	special := fixLanes(out[:2*n], func(i int) { binary.LittleEndian.PutUint16(out[2*i:], HalfFromFloat32(src[i])) })
	return n, special
}

// decodeHalvesFast widens a prefix of src (a multiple of 16 values) into
// dst and returns its length. The hardware quiets signalling NaNs;
// Float32FromHalf keeps their bits, so NaN lanes are redone (Inf lanes
// come out the same either way). It also reports whether any value
// decoded to Inf or NaN.
func decodeHalvesFast(dst []float32, src []byte) (int, bool) {
	n := len(dst) &^ 15
	if !useF16C || n == 0 {
		return 0, false
	}
	floatsFromHalves(&dst[0], &src[0], n)
	special := fixLanes(src[:2*n], func(i int) { dst[i] = Float32FromHalf(binary.LittleEndian.Uint16(src[2*i:])) })
	return n, special
}

// fixLanes calls redo(i) for every half in b whose exponent is all ones
// (Inf or NaN). Per 16-bit lane, exponent + one exponent step carries
// into the lane's top bit only for all ones; 16 lanes share one branch.
func fixLanes(b []byte, redo func(i int)) (any bool) {
	const exp, step, top = 0x7c007c007c007c00, 0x0400040004000400, 0x8000800080008000
	for w := 0; w+4 <= len(b)/8; w += 4 {
		q := b[8*w : 8*w+32 : 8*w+32]
		acc := (binary.LittleEndian.Uint64(q)&exp + step) | (binary.LittleEndian.Uint64(q[8:])&exp + step) |
			(binary.LittleEndian.Uint64(q[16:])&exp + step) | (binary.LittleEndian.Uint64(q[24:])&exp + step)
		if acc&top == 0 {
			continue
		}
		for k := range 16 {
			if binary.LittleEndian.Uint16(q[2*k:])&0x7c00 == 0x7c00 {
				redo(4*w + k)
				any = true
			}
		}
	}
	return any
}
