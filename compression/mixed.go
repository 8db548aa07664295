package compression

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// IDMixed carries consecutive runs of values, each in its own codec: how a
// part that spans several tensors is sent under a per-tensor Policy.
const IDMixed CodecID = 8

// maxSegments bounds the runs of one Mixed payload: a part spans at most a
// few hundred tensors, and the bound keeps MaxEncodedLen tight.
const maxSegments = 1024

func init() { Register(Mixed{}) }

// Segment is Count consecutive values in Codec.
type Segment struct {
	Count int
	Codec Codec
}

// Mixed encodes its Segments one after the other. The payload is
//
//	uvarint segments, then per segment: codec id (1 byte), uvarint count,
//	uvarint payload length, payload
//
// so decoding needs nothing but the bytes: the zero Mixed decodes any of
// them. Codecs inside are never Mixed themselves.
type Mixed struct{ Segments []Segment }

func (Mixed) ID() CodecID       { return IDMixed }
func (Mixed) Name() string      { return "mixed" }
func (Mixed) ShuffleWidth() int { return 1 }

// MaxEncodedLen allows 5 bytes a value (top-k's worst case, the widest
// registered codec), 8 bytes of codec header and 21 of segment header for
// each of at most maxSegments segments.
func (Mixed) MaxEncodedLen(count int) int {
	return binary.MaxVarintLen64 + min(count, maxSegments)*(1+2*binary.MaxVarintLen64+8) + 5*count
}

// Encode panics when the segments do not add up to len(src): a Policy
// builds them for exactly that range, so a mismatch is a bug, not input.
func (c Mixed) Encode(dst []byte, src []float32) []byte {
	total := 0
	for _, s := range c.Segments {
		total += s.Count
	}
	if total != len(src) || len(c.Segments) == 0 || len(c.Segments) > maxSegments {
		panic(fmt.Sprintf("compression: Mixed.Encode: %d segments of %d values for %d values", len(c.Segments), total, len(src)))
	}
	dst = binary.AppendUvarint(dst, uint64(len(c.Segments)))
	var scratch []byte
	for _, s := range c.Segments {
		scratch = s.Codec.Encode(scratch[:0], src[:s.Count])
		src = src[s.Count:]
		dst = append(dst, byte(s.Codec.ID()))
		dst = binary.AppendUvarint(dst, uint64(s.Count))
		dst = binary.AppendUvarint(dst, uint64(len(scratch)))
		dst = append(dst, scratch...)
	}
	return dst
}

func (Mixed) Decode(dst []float32, src []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: mixed: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	nseg, src, err := uvarint(src)
	if err != nil || nseg == 0 || nseg > maxSegments {
		return fail("bad segment count")
	}
	for i := range nseg {
		if len(src) < 1 {
			return fail("segment %d: truncated", i)
		}
		id := CodecID(src[0])
		c, err := Lookup(id)
		if err != nil || id == IDMixed {
			return fail("segment %d: codec id %d", i, id)
		}
		var count, n uint64
		if count, src, err = uvarint(src[1:]); err != nil || count == 0 || count > uint64(len(dst)) {
			return fail("segment %d: count does not fit the %d values left", i, len(dst))
		}
		if n, src, err = uvarint(src); err != nil || n > uint64(len(src)) || n > uint64(c.MaxEncodedLen(int(count))) {
			return fail("segment %d: payload length", i)
		}
		if err := c.Decode(dst[:count], src[:n]); err != nil {
			return fmt.Errorf("%w: mixed: segment %d: %w", ErrMalformed, i, err)
		}
		dst, src = dst[count:], src[n:]
	}
	if len(dst) != 0 || len(src) != 0 {
		return fail("%d values missing, %d bytes left over", len(dst), len(src))
	}
	return nil
}

// uvarint reads one minimally encoded uvarint (see readUvarint).
func uvarint(b []byte) (uint64, []byte, error) {
	v, n := readUvarint(b)
	if n <= 0 {
		return 0, b, errors.New("bad uvarint")
	}
	return v, b[n:], nil
}

// readUvarint is binary.Uvarint that also refuses non-minimal encodings
// (a trailing zero byte): every value has exactly one encoding, so equal
// payloads mean equal bytes. n <= 0 means malformed.
func readUvarint(b []byte) (v uint64, n int) {
	v, n = binary.Uvarint(b)
	if n > 1 && b[n-1] == 0 {
		return 0, -1
	}
	return v, n
}

// Policy picks a codec per tensor: tensors of fewer than SmallTensor values
// (biases, norms) go dense in Small, whose error is negligible and whose
// cost is too, the rest in Large. A zero Small sends everything in Large.
type Policy struct {
	Large, Small Codec
	Tensors      []int // tensor sizes, in the order of the flat vector
	SmallTensor  int
}

// For returns the codec for values [lo, hi) of the flat vector: Large or
// Small when the range is all one kind, else a Mixed of their runs.
func (p Policy) For(lo, hi int) Codec {
	_, largeMixed := p.Large.(Mixed)
	_, smallMixed := p.Small.(Mixed)
	if p.Small == nil || largeMixed || smallMixed || p.Small == p.Large || len(p.Tensors) == 0 || lo >= hi {
		return p.Large // (Mixed holds a slice: comparing it would panic)
	}
	var segs []Segment
	add := func(n int, c Codec) {
		if k := len(segs); k > 0 && segs[k-1].Codec == c {
			segs[k-1].Count += n
			return
		}
		segs = append(segs, Segment{n, c})
	}
	off := 0
	for _, size := range p.Tensors {
		a, b := max(off, lo), min(off+size, hi)
		if a < b {
			c := p.Large
			if size < p.SmallTensor {
				c = p.Small
			}
			add(b-a, c)
		}
		off += size
	}
	if off < hi {
		add(hi-max(off, lo), p.Large) // past the declared tensors
	}
	switch {
	case len(segs) == 1:
		return segs[0].Codec
	case len(segs) > maxSegments:
		return p.Large
	}
	return Mixed{Segments: segs}
}
