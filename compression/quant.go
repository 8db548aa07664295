package compression

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Codec ids of the quantizers.
const (
	IDBF16 CodecID = 3 // bfloat16: the top 16 bits of binary32, rounded
	IDInt8 CodecID = 4 // blockwise absmax int8
	IDInt4 CodecID = 5 // blockwise absmax int4, two values per byte
)

func init() {
	Register(BF16{})
	Register(Int8{})
	Register(Int4{})
}

// BF16 keeps the sign, the full float32 exponent and 7 mantissa bits:
// fp32's range at a relative error of at most 2^-8, and a conversion that
// is a shift. Rounding is to nearest, ties to even; finite values that
// would round to Inf saturate to the largest finite bfloat16.
type BF16 struct{}

func (BF16) ID() CodecID                 { return IDBF16 }
func (BF16) Name() string                { return "bf16" }
func (BF16) MaxEncodedLen(count int) int { return 2 * count }
func (BF16) ShuffleWidth() int           { return 2 }

func (BF16) Encode(dst []byte, src []float32) []byte {
	out, _, _ := bf16Encode(dst, src)
	return out
}

// encodeFinite also reports whether src was all finite, from the same
// pass where the fast path ran: EncodePart then skips its own scan.
func (BF16) encodeFinite(dst []byte, src []float32) ([]byte, bool) {
	out, fast, special := bf16Encode(dst, src)
	return out, allFinite(src, fast, special)
}

// bf16Encode is Encode, reporting how many values the fast path took and
// whether it saw Inf or NaN among them.
func bf16Encode(dst []byte, src []float32) (_ []byte, fast int, special bool) {
	n := len(dst)
	dst = slices.Grow(dst, 2*len(src))[:n+2*len(src)]
	out := dst[n:]
	fast, special = encodeBF16Fast(out, src)
	i := fast // AVX2 where the CPU has it
	// Four at a time into one 8-byte store: without the per-value bounds
	// checks and 2-byte stores this runs about twice as fast.
	for ; i+4 <= len(src); i += 4 {
		s, o := src[i:i+4:i+4], out[2*i:2*i+8:2*i+8]
		binary.LittleEndian.PutUint64(o, uint64(bf16(s[0]))|uint64(bf16(s[1]))<<16|uint64(bf16(s[2]))<<32|uint64(bf16(s[3]))<<48)
	}
	for ; i < len(src); i++ {
		binary.LittleEndian.PutUint16(out[2*i:], bf16(src[i]))
	}
	return dst, fast, special
}

// bf16 rounds to nearest, ties to even; finite values that would round to
// Inf saturate to the largest finite bfloat16.
func bf16(v float32) uint16 {
	b := math.Float32bits(v)
	r := b + 0x7fff + (b>>16)&1
	if r&0x7f800000 == 0x7f800000 && b&0x7f800000 != 0x7f800000 {
		r = b&0x80000000 | 0x7f7f0000
	}
	return uint16(r >> 16)
}

func (BF16) Decode(dst []float32, src []byte) error {
	_, _, err := bf16Decode(dst, src)
	return err
}

// decodeFinite also reports whether every decoded value is finite.
func (BF16) decodeFinite(dst []float32, src []byte) (bool, error) {
	fast, special, err := bf16Decode(dst, src)
	if err != nil {
		return false, err
	}
	return allFinite(dst, fast, special), nil
}

// bf16Decode is Decode, reporting how many values the fast path took and
// whether it saw Inf or NaN among them.
func bf16Decode(dst []float32, src []byte) (fast int, special bool, _ error) {
	if len(src) != 2*len(dst) {
		return 0, false, fmt.Errorf("%w: bf16: %d bytes for %d values", ErrMalformed, len(src), len(dst))
	}
	fast, special = decodeBF16Fast(dst, src)
	i := fast
	for ; i+4 <= len(dst); i += 4 {
		w := binary.LittleEndian.Uint64(src[2*i : 2*i+8 : 2*i+8])
		d := dst[i : i+4 : i+4]
		d[0] = math.Float32frombits(uint32(w) << 16)
		d[1] = math.Float32frombits(uint32(w>>16) << 16)
		d[2] = math.Float32frombits(uint32(w>>32) << 16)
		d[3] = math.Float32frombits(uint32(w>>48) << 16)
	}
	for ; i < len(dst); i++ {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
	return fast, special, nil
}

// Block sizes the blockwise quantizers accept. The encoder picks one; it
// travels in the payload, so any peer decodes any block size.
const (
	MinBlock     = 16
	MaxBlock     = 1 << 16
	DefaultBlock = 256
)

// Int8 quantizes each block of Block values to int8 with one float32
// scale, the block's largest magnitude / 127: 4× fewer bytes than fp32
// (plus 4 bytes per block), an error of at most half a step per value.
// Payload: block u32 | scales f32 × blocks | values int8 × count.
type Int8 struct{ Block int }

// Int4 is Int8 with 4-bit values in [-7, 7], two per byte (low nibble
// first): 8× fewer bytes than fp32.
// Payload: block u32 | scales f32 × blocks | values, ⌈count/2⌉ bytes.
type Int4 struct{ Block int }

func (Int8) ID() CodecID       { return IDInt8 }
func (Int8) Name() string      { return "int8" }
func (Int8) ShuffleWidth() int { return 1 }
func (Int4) ID() CodecID       { return IDInt4 }
func (Int4) Name() string      { return "int4" }
func (Int4) ShuffleWidth() int { return 1 }

func (Int8) MaxEncodedLen(count int) int { return blockHeaderLen(count) + count }
func (Int4) MaxEncodedLen(count int) int { return blockHeaderLen(count) + (count+1)/2 }

// blockHeaderLen bounds the block size and scales for any allowed block.
func blockHeaderLen(count int) int { return 4 + 4*((count+MinBlock-1)/MinBlock) }

func blockOf(b int) int {
	if b == 0 {
		return DefaultBlock
	}
	return min(max(b, MinBlock), MaxBlock)
}

func (c Int8) Encode(dst []byte, src []float32) []byte {
	out, _ := c.encodeFinite(dst, src)
	return out
}

// encodeFinite is Encode, also reporting whether src was all finite
// (found while taking each block's maximum).
func (c Int8) encodeFinite(dst []byte, src []float32) ([]byte, bool) {
	return quantEncode(dst, src, blockOf(c.Block), 127, len(src))
}

func (c Int4) Encode(dst []byte, src []float32) []byte {
	out, _ := c.encodeFinite(dst, src)
	return out
}

func (c Int4) encodeFinite(dst []byte, src []float32) ([]byte, bool) {
	return quantEncode(dst, src, blockOf(c.Block), 7, (len(src)+1)/2)
}

func (Int8) Decode(dst []float32, src []byte) error {
	_, err := quantDecode(dst, src, 127, len(dst))
	return err
}

func (Int4) Decode(dst []float32, src []byte) error {
	_, err := quantDecode(dst, src, 7, (len(dst)+1)/2)
	return err
}

// decodeFinite is Decode, also reporting whether every value is finite:
// a block whose scale times the largest level is finite holds only
// finite values, so no scan of the output is needed.
func (Int8) decodeFinite(dst []float32, src []byte) (bool, error) {
	return quantDecode(dst, src, 127, len(dst))
}

func (Int4) decodeFinite(dst []float32, src []byte) (bool, error) {
	return quantDecode(dst, src, 7, (len(dst)+1)/2)
}

// quantEncode writes the block size, the scales, then the values as
// signed levels in [-levels, levels]: bytes for int8, nibbles for int4.
func quantEncode(dst []byte, src []float32, block int, levels float32, valueBytes int) (_ []byte, finite bool) {
	finite = true
	nb := (len(src) + block - 1) / block
	n := len(dst)
	dst = slices.Grow(dst, 4+4*nb+valueBytes)[:n+4+4*nb+valueBytes]
	out := dst[n:]
	binary.LittleEndian.PutUint32(out, uint32(block))
	scales, vals := out[4:4+4*nb], out[4+4*nb:]
	clear(vals)
	for b := range nb {
		xs := src[b*block : min((b+1)*block, len(src))]
		m, k, special := absMaxFast(xs) // AVX2 for a prefix where the CPU has it
		for _, x := range xs[k:] {
			m = max(m, abs32(x)) // NaN stays NaN
		}
		finite = finite && !special && m <= math.MaxFloat32
		scale := m / levels
		if math.IsInf(float64(levels*scale), 0) {
			// m near MaxFloat32: levels·scale would round up to Inf, and
			// the block's largest value would decode as Inf.
			scale = math.Nextafter32(scale, 0)
		}
		binary.LittleEndian.PutUint32(scales[4*b:], math.Float32bits(scale))
		if scale == 0 {
			continue // all zero (or too small for any level): levels stay 0
		}
		// 1/scale overflows for tiny blocks (m below ~1e-37); then divide.
		inv := 1 / scale
		tiny := math.IsInf(float64(inv), 0)
		base := b * block
		if levels == 127 && !tiny {
			v := vals[base : base+len(xs) : base+len(xs)]
			for i := quantize8Fast(v, xs, inv); i < len(xs); i++ {
				v[i] = byte(quantLevel(xs[i]*inv, 127))
			}
			continue
		}
		for i, x := range xs {
			r := x * inv
			if tiny {
				r = x / scale
			}
			q := quantLevel(r, int32(levels))
			k := base + i
			if levels == 127 {
				vals[k] = byte(q)
			} else {
				vals[k/2] |= byte(q&0x0f) << (4 * (k % 2))
			}
		}
	}
	return dst, finite
}

// quantLevel rounds r half away from zero (as math.Round) and clamps it to
// [-levels, levels]. In float64, r ± 0.5 is exact for any float32 r of
// this size, so truncating it rounds exactly, without math.Round's cost.
func quantLevel(r float32, levels int32) int8 {
	f := float64(r)
	q := int32(f + math.Copysign(0.5, f))
	return int8(min(max(q, -levels), levels))
}

func quantDecode(dst []float32, src []byte, levels int, valueBytes int) (finite bool, _ error) {
	finite = true
	name := "int8"
	if levels == 7 {
		name = "int4"
	}
	if len(src) < 4 {
		return false, fmt.Errorf("%w: %s: no block size", ErrMalformed, name)
	}
	block := int(binary.LittleEndian.Uint32(src))
	if block < MinBlock || block > MaxBlock {
		return false, fmt.Errorf("%w: %s: block size %d out of [%d, %d]", ErrMalformed, name, block, MinBlock, MaxBlock)
	}
	nb := (len(dst) + block - 1) / block
	if len(src) != 4+4*nb+valueBytes {
		return false, fmt.Errorf("%w: %s: %d bytes for %d values in blocks of %d", ErrMalformed, name, len(src), len(dst), block)
	}
	scales, vals := src[4:4+4*nb], src[4+4*nb:]
	for b := range nb {
		scale := math.Float32frombits(binary.LittleEndian.Uint32(scales[4*b:]))
		if !(scale >= 0) || math.IsInf(float64(scale), 0) {
			return false, fmt.Errorf("%w: %s: block %d has scale %v", ErrMalformed, name, b, scale)
		}
		finite = finite && !math.IsInf(float64(float32(levels)*scale), 0)
		lo, hi := b*block, min((b+1)*block, len(dst))
		if levels == 127 && scale != 0 {
			k, bad := dequantize8Fast(dst[lo:hi], vals[lo:hi], scale)
			if bad {
				return false, fmt.Errorf("%w: %s: level -128 out of [-127, 127] in block %d", ErrMalformed, name, b)
			}
			lo += k
		}
		for i := lo; i < hi; i++ {
			var q int
			if levels == 127 {
				q = int(int8(vals[i]))
			} else {
				q = int(int8(vals[i/2]<<(4*(1-i%2))) >> 4) // sign-extend the nibble
			}
			if q < -levels || q > levels || (q != 0 && scale == 0) {
				return false, fmt.Errorf("%w: %s: level %d out of [-%d, %d] (scale %v)", ErrMalformed, name, q, levels, levels, scale)
			}
			dst[i] = float32(q) * scale
		}
	}
	if levels == 7 && len(dst)%2 == 1 && vals[len(vals)-1]>>4 != 0 {
		return false, fmt.Errorf("%w: int4: padding nibble is not zero", ErrMalformed)
	}
	return finite, nil
}

// ParseCodec returns the codec a run names: a registered name, or a
// blockwise quantizer with its block size, e.g. "int8:1024".
func ParseCodec(spec string) (Codec, error) {
	name, arg, hasArg := strings.Cut(spec, ":")
	if !hasArg {
		return ByName(name)
	}
	if name == "topk" {
		return parseTopK(arg)
	}
	block, err := strconv.Atoi(arg)
	if err != nil || block < MinBlock || block > MaxBlock {
		return nil, fmt.Errorf("codec %q: block size %q, want %d..%d", spec, arg, MinBlock, MaxBlock)
	}
	switch name {
	case "int8":
		return Int8{Block: block}, nil
	case "int4":
		return Int4{Block: block}, nil
	}
	return nil, fmt.Errorf("codec %q: only int8 and int4 take a block size, topk a fraction", spec)
}
