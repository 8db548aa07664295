//go:build amd64 && !purego

package compression

import (
	"bytes"
	"math"
	"slices"
	"testing"
)

// The F16C path and the portable one give the same bytes and the same
// floats for every kind of value: normals, subnormals, values past the
// half range (saturated, not Inf), zeros, and every half pattern,
// NaNs included, on lengths that leave a tail for the portable loop.
func TestF16CMatchesPortable(t *testing.T) {
	if !useF16C {
		t.Skip("this CPU has no F16C: only the portable path runs")
	}
	special := []float32{65504, 65519, 65520, 1e6, -70000, 5.96e-8, 2.98e-8, 1e-10, 0, float32(math.Copysign(0, -1)), 6.1e-5, -3.4e38}
	src := slices.Concat(special, special[1:], special[2:], normals(1000, 21)) // specials first: the wide loop sees them
	var halves []byte
	for h := range 1 << 16 {
		halves = append(halves, byte(h), byte(h>>8))
	}
	run := func(f16c bool) ([]byte, []float32) {
		defer func(old bool) { useF16C = old }(useF16C)
		useF16C = f16c
		dec := make([]float32, len(halves)/2-3)
		if err := (FP16{}).Decode(dec, halves[:len(halves)-6]); err != nil {
			t.Fatal(err)
		}
		return FP16{}.Encode(nil, src), dec
	}
	encFast, decFast := run(true)
	encSlow, decSlow := run(false)
	if !bytes.Equal(encFast, encSlow) {
		for i := range src {
			if encFast[2*i] != encSlow[2*i] || encFast[2*i+1] != encSlow[2*i+1] {
				t.Fatalf("encode %g: F16C %x, portable %x", src[i], encFast[2*i:2*i+2], encSlow[2*i:2*i+2])
			}
		}
	}
	for i := range decFast {
		if math.Float32bits(decFast[i]) != math.Float32bits(decSlow[i]) {
			t.Fatalf("decode %#04x: F16C %#08x, portable %#08x", i, math.Float32bits(decFast[i]), math.Float32bits(decSlow[i]))
		}
	}
}

// The AVX2 bf16 loops give the portable loops' bytes and floats, for
// ties, saturation, Inf, NaNs whose rounding carries, subnormals and
// zeros, on a length that leaves a tail.
func TestAVX2BF16MatchesPortable(t *testing.T) {
	if !useAVX2 {
		t.Skip("this CPU has no AVX2: only the portable path runs")
	}
	bits := []uint32{0x3f808000, 0x3f818000, 0xbf808000, 0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f800000, 0xff800000,
		0x7f800001, 0x7fffffff, 0xffc00000, 0x00000001, 0x807fffff, 0, 0x80000000, 0x3f80ffff, 0x3f817fff}
	var src []float32
	for k := range 3 { // each special value in several lanes of the wide loop
		for _, b := range bits[k:] {
			src = append(src, math.Float32frombits(b))
		}
	}
	src = append(src, normals(300, 31)...)
	var halves []byte
	for h := range 1 << 16 {
		halves = append(halves, byte(h), byte(h>>8))
	}
	run := func(avx bool) ([]byte, []float32) {
		defer func(old bool) { useAVX2 = old }(useAVX2)
		useAVX2 = avx
		dec := make([]float32, len(halves)/2-5)
		if err := (BF16{}).Decode(dec, halves[:len(halves)-10]); err != nil {
			t.Fatal(err)
		}
		return BF16{}.Encode(nil, src), dec
	}
	encFast, decFast := run(true)
	encSlow, decSlow := run(false)
	for i := range src {
		if encFast[2*i] != encSlow[2*i] || encFast[2*i+1] != encSlow[2*i+1] {
			t.Fatalf("encode %#08x: AVX2 %x, portable %x", math.Float32bits(src[i]), encFast[2*i:2*i+2], encSlow[2*i:2*i+2])
		}
	}
	for i := range decFast {
		if math.Float32bits(decFast[i]) != math.Float32bits(decSlow[i]) {
			t.Fatalf("decode %#04x: AVX2 %#08x, portable %#08x", i, math.Float32bits(decFast[i]), math.Float32bits(decSlow[i]))
		}
	}
}

// The AVX2 int8 loops give the portable loops' bytes and floats: ties
// rounded away from zero, values just under a half, blocks at the ends
// of the float32 range, zero blocks, block sizes that leave tails; and
// both refuse a -128 level wherever it sits.
func TestAVX2Int8MatchesPortable(t *testing.T) {
	if !useAVX2 {
		t.Skip("this CPU has no AVX2: only the portable path runs")
	}
	ties := []float32{127, 2.5, -2.5, 0.49999997, -0.49999997, 126.5, -126.5, 0.5, -0.5, 1.5, 0, 3.4999998, 64.5, -1e-3, 7, 8}
	src := slices.Concat(ties, ties, normals(1000, 41), slices.Repeat([]float32{math.MaxFloat32, -1}, 16),
		slices.Repeat([]float32{1e-38, -3e-39}, 16), make([]float32, 48), normals(37, 42))
	for _, block := range []int{16, 100, 256} {
		c := Int8{Block: block}
		var encs [2][]byte
		var decs [2][]float32
		for k, avx := range []bool{true, false} {
			func() {
				defer func(old bool) { useAVX2 = old }(useAVX2)
				useAVX2 = avx
				encs[k] = c.Encode(nil, src)
				decs[k] = make([]float32, len(src))
				if err := c.Decode(decs[k], encs[k]); err != nil {
					t.Fatal(err)
				}
				bad := slices.Clone(encs[k])
				bad[len(bad)-len(src)+500] = 0x80
				if c.Decode(make([]float32, len(src)), bad) == nil {
					t.Fatalf("block %d, avx2 %v: a -128 level was accepted", block, avx)
				}
			}()
		}
		if !bytes.Equal(encs[0], encs[1]) {
			t.Fatalf("block %d: AVX2 and portable encodings differ", block)
		}
		// Outside the contract (EncodePart refuses it) but still the same
		// bytes: a NaN or an Inf in a block.
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
			odd := slices.Clone(src)
			odd[3], odd[40] = bad, 1e30
			var got [2][]byte
			for k, avx := range []bool{true, false} {
				func() {
					defer func(old bool) { useAVX2 = old }(useAVX2)
					useAVX2 = avx
					got[k] = c.Encode(nil, odd)
				}()
			}
			if !bytes.Equal(got[0], got[1]) {
				t.Fatalf("block %d with %v: AVX2 and portable encodings differ", block, bad)
			}
		}
		for i := range src {
			if math.Float32bits(decs[0][i]) != math.Float32bits(decs[1][i]) {
				t.Fatalf("block %d, value %d: AVX2 %v, portable %v", block, i, decs[0][i], decs[1][i])
			}
		}
	}
}
