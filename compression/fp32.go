package compression

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"
)

// FP32 is the identity codec: each value as little-endian IEEE binary32.
// It is bit-exact, so it is the reference the lossy codecs are measured by.
type FP32 struct{}

func (FP32) ID() CodecID                 { return IDFP32 }
func (FP32) Name() string                { return "fp32" }
func (FP32) MaxEncodedLen(count int) int { return 4 * count }
func (FP32) ShuffleWidth() int           { return 4 }

// Encode appends 4*len(src) bytes to dst.
func (FP32) Encode(dst []byte, src []float32) []byte {
	n := len(dst)
	dst = slices.Grow(dst, 4*len(src))[:n+4*len(src)]
	out := dst[n:]
	if littleEndian {
		copy(out, floatBytes(src)) // the wire order is the memory order
		return dst
	}
	for i, v := range src {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return dst
}

// littleEndian machines (amd64, arm64, …) hold float32s in wire order.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// floatBytes views v's memory as bytes.
func floatBytes(v []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
}

// WireBytes returns v as little-endian fp32 bytes without copying: v's
// own memory, on little-endian machines (ok false elsewhere; encode with
// FP32 then). The bytes alias v: read them, never keep or change them.
func WireBytes(v []float32) (b []byte, ok bool) {
	if !littleEndian {
		return nil, false
	}
	return floatBytes(v), true
}

// Decode requires len(src) == 4*len(dst).
func (FP32) Decode(dst []float32, src []byte) error {
	if len(src) != 4*len(dst) {
		return fmt.Errorf("%w: fp32: %d bytes for %d values", ErrMalformed, len(src), len(dst))
	}
	if littleEndian {
		copy(floatBytes(dst), src)
		return nil
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
	return nil
}
