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
