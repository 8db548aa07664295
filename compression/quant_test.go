package compression

import (
	"errors"
	"math"
	"math/big"
	"slices"
	"testing"
)

// Each quantizer round-trips through a frame within its error bound, the
// same bytes decode to the same bits, and the size is what it promises.
func TestQuantizersRoundTrip(t *testing.T) {
	src := normals(10_007, 1) // not a multiple of any block
	src[5] = 0
	src[17] = 1e-30 // tiny values in a block with large ones round to 0
	for _, c := range []struct {
		codec Codec
		// bound on |x - y| relative to the block's largest magnitude
		// (or to |x| for bf16)
		rel   float64
		bytes int
	}{
		{BF16{}, 1.0 / 256, 2 * len(src)},
		{Int8{}, 0.5 / 127, 4 + 4*40 + len(src)},
		{Int8{Block: 64}, 0.5 / 127, 4 + 4*157 + len(src)},
		{Int4{}, 0.5 / 7, 4 + 4*40 + (len(src)+1)/2},
		{Int4{Block: 4096}, 0.5 / 7, 4 + 4*3 + (len(src)+1)/2},
	} {
		enc := c.codec.Encode(nil, src)
		if len(enc) != c.bytes || len(enc) > c.codec.MaxEncodedLen(len(src)) {
			t.Errorf("%s block %v: %d bytes, want %d (max %d)", c.codec.Name(), c.codec, len(enc), c.bytes, c.codec.MaxEncodedLen(len(src)))
		}
		frame, err := EncodePart(nil, c.codec, LosslessNone, src)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float32, len(src))
		if err := DecodePart(got, frame); err != nil {
			t.Fatalf("%s: %v", c.codec.Name(), err)
		}
		block := len(src)
		switch q := c.codec.(type) {
		case Int8:
			block = blockOf(q.Block)
		case Int4:
			block = blockOf(q.Block)
		}
		for i, x := range src {
			ref := math.Abs(float64(x))
			if block < len(src) || c.codec.Name() != "bf16" {
				lo := i / block * block
				ref = 0
				for _, y := range src[lo:min(lo+block, len(src))] {
					ref = max(ref, math.Abs(float64(y)))
				}
			}
			if d := math.Abs(float64(got[i]) - float64(x)); d > c.rel*ref*(1+1e-6) {
				t.Fatalf("%s: value %d: %v → %v, error %g over %g", c.codec.Name(), i, x, got[i], d, c.rel*ref)
			}
		}
		again := make([]float32, len(src))
		if err := DecodePart(again, frame); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(again[i]) {
				t.Fatalf("%s: decoding is not a pure function of the bytes", c.codec.Name())
			}
		}
	}
}

// bf16 rounds to nearest, ties to even, at 8 significant bits: checked
// against math/big, an independent implementation of that rounding.
func TestBF16MatchesBigFloat(t *testing.T) {
	src := normals(100_000, 11)
	src = append(src, 1+1.0/256, 1+3.0/256, -(1 + 1.0/256), 3.0e38) // exact ties, a large value
	got := make([]float32, len(src))
	if err := (BF16{}).Decode(got, BF16{}.Encode(nil, src)); err != nil {
		t.Fatal(err)
	}
	for i, x := range src {
		want, _ := new(big.Float).SetPrec(8).SetMode(big.ToNearestEven).SetFloat64(float64(x)).Float32()
		if math.Float32bits(got[i]) != math.Float32bits(want) {
			t.Fatalf("bf16(%v) = %v, want %v", x, got[i], want)
		}
	}
}

// bf16 keeps fp32's range: huge finite values saturate, never become Inf.
func TestBF16Saturates(t *testing.T) {
	enc := BF16{}.Encode(nil, []float32{math.MaxFloat32, -math.MaxFloat32, 1, 0})
	got := make([]float32, 4)
	if err := (BF16{}).Decode(got, enc); err != nil {
		t.Fatal(err)
	}
	if math.IsInf(float64(got[0]), 0) || math.IsInf(float64(got[1]), 0) || got[0] <= 0 || got[1] >= 0 {
		t.Errorf("max float32 became %v, %v", got[0], got[1])
	}
	if got[2] != 1 || got[3] != 0 {
		t.Errorf("exact values changed: %v", got[2:])
	}
}

// Hostile payloads are refused: bad block sizes, wrong lengths, negative
// or non-finite scales, out-of-range levels, a non-zero padding nibble.
func TestQuantizersRejectMalformed(t *testing.T) {
	good8 := Int8{Block: 16}.Encode(nil, normals(33, 2))
	good4 := Int4{Block: 16}.Encode(nil, normals(33, 2))
	mut := func(b []byte, f func([]byte)) []byte {
		c := append([]byte(nil), b...)
		f(c)
		return c
	}
	cases := []struct {
		name  string
		codec Codec
		src   []byte
	}{
		{"empty", Int8{}, nil},
		{"block 0", Int8{}, mut(good8, func(b []byte) { b[0], b[1] = 0, 0 })},
		{"block too big", Int8{}, mut(good8, func(b []byte) { b[3] = 1 })},
		{"short", Int8{}, good8[:len(good8)-1]},
		{"negative scale", Int8{}, mut(good8, func(b []byte) { b[7] |= 0x80 })},
		{"NaN scale", Int8{}, mut(good8, func(b []byte) { b[4], b[5], b[6], b[7] = 0, 0, 0xc0, 0x7f })},
		{"level -128", Int8{}, mut(good8, func(b []byte) { b[len(b)-1] = 0x80 })},
		{"level -8", Int4{}, mut(good4, func(b []byte) { b[len(b)-2] = 0x88 })},
		{"levels under a zero scale", Int8{}, mut(good8, func(b []byte) { b[4], b[5], b[6], b[7] = 0, 0, 0, 0 })},
		{"padding nibble", Int4{}, mut(good4, func(b []byte) { b[len(b)-1] |= 0x10 })},
	}
	for _, c := range cases {
		dst := make([]float32, 33)
		if err := c.codec.Decode(dst, c.src); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", c.name, err)
		}
	}
	if _, err := ParseCodec("int8:1024"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"int8:8", "int8:x", "fp16:64", "int9"} {
		if _, err := ParseCodec(bad); err == nil {
			t.Errorf("ParseCodec(%q) accepted", bad)
		}
	}
}

// Measure reports what the codecs promise: fp32 is exact at ratio ~1,
// the quantizers shrink by about their bit width with a small error.
func TestMeasure(t *testing.T) {
	src := normals(1<<16, 9)
	for _, c := range []struct {
		codec         Codec
		ratioMin, err float64
	}{{FP32{}, 0.99, 0}, {FP16{}, 1.99, 1e-3}, {BF16{}, 1.99, 4e-3}, {Int8{}, 3.9, 1e-2}, {Int4{}, 7.4, 0.15}} {
		m, err := Measure(c.codec, LosslessNone, src, 1)
		if err != nil {
			t.Fatal(err)
		}
		if m.Ratio < c.ratioMin || m.RelL2 > c.err || (c.err == 0 && m.RelL2 != 0) || m.EncodeGB <= 0 || m.DecodeGB <= 0 {
			t.Errorf("%s: %+v", c.codec.Name(), m)
		}
	}
}

// s2 pays where payloads have runs: a sparse part with long zero gaps
// between quantized levels shrinks; float noise is sent as is.
func TestS2PaysOnRuns(t *testing.T) {
	src := make([]float32, 1<<16)
	for i := range src {
		if i%64 == 0 {
			src[i] = 1
		}
	}
	frame, err := EncodePart(nil, Int8{}, LosslessS2, src)
	if err != nil {
		t.Fatal(err)
	}
	if Lossless(frame[2]) != LosslessS2 || len(frame) > len(src)/4 {
		t.Errorf("s2 frame: stage %v, %d bytes for %d int8 values", Lossless(frame[2]), len(frame), len(src))
	}
	got := make([]float32, len(src))
	if err := DecodePart(got, frame); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if got[i] != src[i] {
			t.Fatalf("value %d: %v, want %v", i, got[i], src[i])
		}
	}
}

// A payload larger than the zstd window the decoder accepts is sent
// without zstd rather than in a frame nobody can decode.
func TestZstdSkipsHugePayloads(t *testing.T) {
	src := normals(zstdMaxWindow/4+1000, 6)
	frame, err := EncodePart(nil, FP32{}, LosslessZstd, src)
	if err != nil {
		t.Fatal(err)
	}
	if Lossless(frame[2]) != LosslessNone {
		t.Errorf("a %d-byte payload went out with %v", 4*len(src), Lossless(frame[2]))
	}
	if err := DecodePart(make([]float32, len(src)), frame); err != nil {
		t.Fatal(err)
	}
}

func TestFirstNonFinite(t *testing.T) {
	inf := float32(math.Inf(1))
	for _, c := range []struct {
		xs   []float32
		want int
	}{{nil, -1}, {[]float32{0, 1, -3e38}, -1}, {[]float32{1, float32(math.NaN())}, 1}, {[]float32{-inf, 0}, 0}} {
		if got := FirstNonFinite(c.xs); got != c.want {
			t.Errorf("FirstNonFinite(%v) = %d, want %d", c.xs, got, c.want)
		}
	}
	// Every position of the eight-wide loop and its tail, the first of
	// two bad values, and the largest finite values around them.
	for n := range 27 {
		for at := range n {
			xs := slices.Repeat([]float32{math.MaxFloat32, -math.MaxFloat32, 1e-45}, 9)[:n]
			xs[at] = float32(math.NaN())
			if at+3 < n {
				xs[at+3] = -inf
			}
			if got := FirstNonFinite(xs); got != at {
				t.Fatalf("length %d, NaN at %d: got %d", n, at, got)
			}
		}
		if n > 0 && FirstNonFinite(slices.Repeat([]float32{math.MaxFloat32}, n)) != -1 {
			t.Fatalf("length %d of MaxFloat32 counted as non-finite", n)
		}
	}
}

// Blocks at the ends of the float32 range: the largest magnitude must not
// decode as Inf, and blocks of tiny values must keep their values, not
// snap them all to the block maximum.
func TestQuantizersExtremeBlocks(t *testing.T) {
	for _, c := range []Codec{Int8{Block: 16}, Int4{Block: 16}} {
		for _, src := range [][]float32{
			{math.MaxFloat32, -math.MaxFloat32 / 3, 1, 0},
			{3.3e-38, 1e-38, -2e-38, 0, 1e-39},
		} {
			frame, err := EncodePart(nil, c, LosslessNone, src)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, len(src))
			if err := DecodePart(got, frame); err != nil {
				t.Fatalf("%s %v: %v", c.Name(), src, err)
			}
			levels := 127.0
			if c.ID() == IDInt4 {
				levels = 7
			}
			var m float64
			for _, x := range src {
				m = max(m, math.Abs(float64(x)))
			}
			for i, x := range src {
				if d := math.Abs(float64(got[i]) - float64(x)); d > 0.51*m/levels {
					t.Errorf("%s: %v → %v, error %g over half a step %g", c.Name(), x, got[i], d, 0.5*m/levels)
				}
			}
		}
	}
}
