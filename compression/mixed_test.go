package compression

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

// A Mixed payload decodes each run exactly as its own codec would.
func TestMixedRoundTrip(t *testing.T) {
	v := normals(1000, 7)
	m := Mixed{Segments: []Segment{{10, FP16{}}, {900, TopK{Fraction: 0.05}}, {90, Int8{Block: 32}}}}
	got := make([]float32, len(v))
	if err := DecodePart(got, mustEncode(t, m, LosslessZstd, v)); err != nil {
		t.Fatal(err)
	}
	off := 0
	for _, s := range m.Segments {
		want := make([]float32, s.Count)
		if err := s.Codec.Decode(want, s.Codec.Encode(nil, v[off:off+s.Count])); err != nil {
			t.Fatal(err)
		}
		for i, w := range want {
			if math.Float32bits(got[off+i]) != math.Float32bits(w) {
				t.Fatalf("%s run: value %d is %v, its codec gives %v", s.Codec.Name(), off+i, got[off+i], w)
			}
		}
		off += s.Count
	}
	if l := len(m.Encode(nil, v)); l > (Mixed{}).MaxEncodedLen(len(v)) {
		t.Fatalf("payload of %d bytes exceeds MaxEncodedLen", l)
	}
}

// Payloads that lie about their runs are refused, never half-decoded
// into a panic.
func TestMixedRefusesMalformed(t *testing.T) {
	seg := func(id CodecID, count int, payload []byte) []byte {
		b := append([]byte{byte(id)}, binary.AppendUvarint(nil, uint64(count))...)
		b = binary.AppendUvarint(b, uint64(len(payload)))
		return append(b, payload...)
	}
	half := FP16{}.Encode(nil, []float32{1, 2})
	good := append([]byte{1}, seg(IDFP16, 2, half)...)
	if err := (Mixed{}).Decode(make([]float32, 2), good); err != nil {
		t.Fatalf("the well-formed control case fails: %v", err)
	}
	cases := map[string][]byte{
		"no segments":        {0},
		"too many segments":  binary.AppendUvarint(nil, maxSegments+1),
		"nested mixed":       append([]byte{1}, seg(IDMixed, 2, good)...),
		"unknown codec":      append([]byte{1}, seg(99, 2, half)...),
		"count past the end": append([]byte{1}, seg(IDFP16, 3, half)...),
		"count short":        append([]byte{1}, seg(IDFP16, 1, half[:2])...),
		"zero count":         append([]byte{2}, append(seg(IDFP16, 0, nil), seg(IDFP16, 2, half)...)...),
		"payload past end":   append([]byte{1, byte(IDFP16), 2, 9}, half...),
		"trailing bytes":     append(slices.Clone(good), 0),
		"truncated":          good[:len(good)-1],
		"non-minimal varint": append([]byte{0x81, 0x00}, seg(IDFP16, 2, half)...),
		"payload over bound": append([]byte{1}, seg(IDFP16, 2, append(slices.Clone(half), 0, 0))...),
		"run decodes badly":  append([]byte{1}, seg(IDInt8, 2, []byte{3, 0, 0, 0, 0, 0, 0, 0, 1, 2})...),
		"second run missing": append([]byte{2}, seg(IDFP16, 2, half)...),
	}
	for name, payload := range cases {
		if err := (Mixed{}).Decode(make([]float32, 2), payload); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A Policy sends small tensors in Small and large ones in Large, joins
// neighbouring runs of one codec, and needs no Mixed for a one-kind range.
func TestPolicyFor(t *testing.T) {
	p := Policy{Large: TopK{Fraction: 0.01}, Small: FP16{}, Tensors: []int{1000, 10, 20, 500, 5}, SmallTensor: 100}
	segs := func(c Codec) []Segment {
		if m, ok := c.(Mixed); ok {
			return m.Segments
		}
		return []Segment{{-1, c}}
	}
	cases := []struct {
		lo, hi int
		want   []Segment
	}{
		{0, 1000, []Segment{{-1, p.Large}}},
		{1000, 1030, []Segment{{-1, p.Small}}},
		{990, 1040, []Segment{{10, p.Large}, {30, p.Small}, {10, p.Large}}},
		{0, 1535, []Segment{{1000, p.Large}, {30, p.Small}, {500, p.Large}, {5, p.Small}}},
		{1500, 1540, []Segment{{30, p.Large}, {5, p.Small}, {5, p.Large}}}, // past the tensors: Large
	}
	for _, c := range cases {
		if got := segs(p.For(c.lo, c.hi)); !slices.Equal(got, c.want) {
			t.Errorf("For(%d, %d) = %v, want %v", c.lo, c.hi, got, c.want)
		}
	}
	if c := (Policy{Large: Int8{}, Tensors: []int{10, 1}, SmallTensor: 5}).For(0, 11); c != (Int8{}) {
		t.Errorf("without Small: %v, want Large", c)
	}
}
