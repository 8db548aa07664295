package compression

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// FP16 stores each value as little-endian IEEE binary16 (half precision),
// halving the bytes at a relative error of at most 2^-11 for values in the
// normal half range [2^-14, 65504].
//
// Rounding is to nearest, ties to even, including into the subnormal range
// (steps of 2^-24); magnitudes up to 2^-25 (a tie at half the smallest
// subnormal) become a signed zero.
// Finite values that would round beyond the half range saturate to ±65504
// (0x7BFF / 0xFBFF) instead of becoming ±Inf: one large gradient element
// must not turn into an Inf that makes the whole part undecodable.
// ±Inf stays ±Inf and NaN becomes the quiet NaN 0x7E00 with its sign kept;
// EncodePart refuses both before they reach the codec.
type FP16 struct{}

func (FP16) ID() CodecID                 { return IDFP16 }
func (FP16) Name() string                { return "fp16" }
func (FP16) MaxEncodedLen(count int) int { return 2 * count }
func (FP16) ShuffleWidth() int           { return 2 }

// Encode appends 2*len(src) bytes to dst.
func (FP16) Encode(dst []byte, src []float32) []byte {
	out, _, _ := fp16Encode(dst, src)
	return out
}

// encodeFinite also reports whether src was all finite, from the same
// pass where the fast path ran: EncodePart then skips its own scan.
func (FP16) encodeFinite(dst []byte, src []float32) ([]byte, bool) {
	out, fast, special := fp16Encode(dst, src)
	return out, allFinite(src, fast, special)
}

// fp16Encode is Encode, reporting how many values the fast path took and
// whether it saw Inf or NaN among them.
func fp16Encode(dst []byte, src []float32) (_ []byte, fast int, special bool) {
	n := len(dst)
	dst = slices.Grow(dst, 2*len(src))[:n+2*len(src)]
	out := dst[n:]
	fast, special = encodeHalvesFast(out, src)
	i := fast // F16C where the CPU has it
	// Four at a time: the normal range inline with one check for all four
	// and one 8-byte store; anything else out of line.
	for ; i+4 <= len(src); i += 4 {
		s, o := src[i:i+4:i+4], out[2*i:2*i+8:2*i+8]
		b0, b1, b2, b3 := math.Float32bits(s[0]), math.Float32bits(s[1]), math.Float32bits(s[2]), math.Float32bits(s[3])
		a0, a1, a2, a3 := b0&0x7fffffff, b1&0x7fffffff, b2&0x7fffffff, b3&0x7fffffff
		const lo, span = halfMinNormal32, halfMaxNormal32 - halfMinNormal32
		if a0-lo < span && a1-lo < span && a2-lo < span && a3-lo < span {
			binary.LittleEndian.PutUint64(o, uint64(uint16(b0>>16)&0x8000|halfNormal(a0))|
				uint64(uint16(b1>>16)&0x8000|halfNormal(a1))<<16|
				uint64(uint16(b2>>16)&0x8000|halfNormal(a2))<<32|
				uint64(uint16(b3>>16)&0x8000|halfNormal(a3))<<48)
			continue
		}
		for k, v := range s {
			binary.LittleEndian.PutUint16(o[2*k:], HalfFromFloat32(v))
		}
	}
	for ; i < len(src); i++ {
		binary.LittleEndian.PutUint16(out[2*i:], HalfFromFloat32(src[i]))
	}
	return dst, fast, special
}

// Decode requires len(src) == 2*len(dst). Every half converts exactly to a
// float32, so decoding is bit-identical on every platform.
func (FP16) Decode(dst []float32, src []byte) error {
	_, _, err := fp16Decode(dst, src)
	return err
}

// decodeFinite also reports whether every decoded value is finite.
func (FP16) decodeFinite(dst []float32, src []byte) (bool, error) {
	fast, special, err := fp16Decode(dst, src)
	if err != nil {
		return false, err
	}
	return allFinite(dst, fast, special), nil
}

// fp16Decode is Decode, reporting how many values the fast path took and
// whether it saw Inf or NaN among them.
func fp16Decode(dst []float32, src []byte) (fast int, special bool, _ error) {
	if len(src) != 2*len(dst) {
		return 0, false, fmt.Errorf("%w: fp16: %d bytes for %d values", ErrMalformed, len(src), len(dst))
	}
	fast, special = decodeHalvesFast(dst, src)
	i := fast
	for ; i+4 <= len(dst); i += 4 {
		w := binary.LittleEndian.Uint64(src[2*i : 2*i+8 : 2*i+8])
		d := dst[i : i+4 : i+4]
		h0, h1, h2, h3 := uint16(w), uint16(w>>16), uint16(w>>32), uint16(w>>48)
		if halfIsNormal(h0) && halfIsNormal(h1) && halfIsNormal(h2) && halfIsNormal(h3) {
			d[0], d[1], d[2], d[3] = normalHalf(h0), normalHalf(h1), normalHalf(h2), normalHalf(h3)
			continue
		}
		d[0], d[1], d[2], d[3] = Float32FromHalf(h0), Float32FromHalf(h1), Float32FromHalf(h2), Float32FromHalf(h3)
	}
	for ; i < len(dst); i++ {
		dst[i] = Float32FromHalf(binary.LittleEndian.Uint16(src[2*i:]))
	}
	return fast, special, nil
}

// HalfFromFloat32 converts f to IEEE binary16 bits with the rounding and
// saturation rules documented on FP16. It uses integer arithmetic only, so
// the result does not depend on the FPU or the compiler.
func HalfFromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	a := b & 0x7fffffff
	switch {
	case a >= halfMinNormal32 && a < halfMaxNormal32:
		return sign | halfNormal(a)
	case a > 0x7f800000:
		return sign | 0x7e00 // NaN
	case a == 0x7f800000:
		return sign | 0x7c00 // ±Inf
	case a >= 0x47800000:
		return sign | 0x7bff // too large even before rounding: saturate
	case a < 0x33000000:
		return sign // at most half the smallest subnormal: ties to even 0
	}
	// Subnormal half: the value in units of 2^-24 is full >> shift, with
	// full the 24-bit significand and shift 14..24 for float32 exponents
	// 102..112.
	full := a&0x7fffff | 0x800000
	shift := 126 - a>>23
	h := full >> shift
	rem := full & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && h&1 == 1) {
		h++ // may carry into the smallest normal, 0x0400, which is correct
	}
	return sign | uint16(h)
}

// Float32 bit patterns (sign cleared) bounding the inputs that land in the
// half normal range before rounding: 2^-14 and 2^16.
const (
	halfMinNormal32 = 0x38800000
	halfMaxNormal32 = 0x47800000
)

// halfNormal converts a, float32 bits without sign in [halfMinNormal32,
// halfMaxNormal32), to half bits without sign. Adding 0xfff plus the lowest
// kept bit rounds to nearest-even without a branch (whether to round up is
// a coin flip on real data, so a branch would mispredict half the time); a
// carry out of the mantissa correctly bumps the exponent; subtracting
// 112<<10 rebiases 127 to 15; min saturates what rounded up to Inf.
// halfIsNormal reports a normal binary16 (exponent neither 0 nor 31).
func halfIsNormal(h uint16) bool { e := h & 0x7c00; return e != 0 && e != 0x7c00 }

// normalHalf widens a normal binary16: rebias the exponent, shift.
func normalHalf(h uint16) float32 {
	return math.Float32frombits(uint32(h&0x8000)<<16 | (uint32(h&0x7fff)<<13 + 112<<23))
}

func halfNormal(a uint32) uint16 {
	return uint16(min((a+0xfff+(a>>13)&1)>>13-112<<10, 0x7bff))
}

// Float32FromHalf converts IEEE binary16 bits to float32 exactly; NaN
// payloads are kept in the top mantissa bits.
func Float32FromHalf(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	e := uint32(h>>10) & 0x1f
	m := uint32(h & 0x3ff)
	switch {
	case e == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | m<<13)
	case e != 0:
		return math.Float32frombits(sign | (e+112)<<23 | m<<13)
	case m == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal m * 2^-24: normalise so the leading one becomes implicit.
	shift := uint32(11 - bits.Len32(m)) // 1..10 left shifts to reach bit 10
	m <<= shift
	return math.Float32frombits(sign | (113-shift)<<23 | (m&0x3ff)<<13)
}
