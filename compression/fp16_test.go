package compression

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestHalfKnownPatterns(t *testing.T) {
	sub := float32(math.Ldexp(1, -24)) // smallest half subnormal
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3C00},
		{-2, 0xC000},
		{0.5, 0x3800},
		{0.1, 0x2E66},
		{65504, 0x7BFF},
		{-65504, 0xFBFF},
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{sub, 0x0001},
		{-sub, 0x8001},
		{float32(math.Ldexp(1, -14)), 0x0400},            // smallest normal
		{float32(math.Ldexp(1023, -24)), 0x03FF},         // largest subnormal
		{float32(math.Ldexp(1, -25)), 0x0000},            // half of smallest subnormal: tie to even 0
		{float32(math.Ldexp(3, -26)), 0x0001},            // 0.75 ulp rounds up
		{float32(math.Ldexp(3, -25)), 0x0002},            // 1.5 ulp: tie to even 2
		{float32(math.Ldexp(5, -25)), 0x0002},            // 2.5 ulp: tie to even 2
		{float32(math.Ldexp(1, -26)), 0x0000},            // underflow
		{float32(math.Ldexp(2047, -25)), 0x0400},         // rounds up out of subnormals
		{1 + float32(math.Ldexp(1, -11)), 0x3C00},        // tie, even stays
		{1 + float32(math.Ldexp(3, -11)), 0x3C02},        // tie, odd rounds up
		{1 + float32(math.Ldexp(1, -11)) + 1e-6, 0x3C01}, // just above tie
		{2047.0 / 1024 * 32768, 0x7BFF},                  // 65504 from mantissa side
		{math.Float32frombits(0x1), 0x0000},              // float32 subnormal
		{float32(math.Inf(1)), 0x7C00},
		{float32(math.Inf(-1)), 0xFC00},
		// Saturation instead of Inf.
		{65519, 0x7BFF},
		{65520, 0x7BFF}, // would round to Inf under plain RNE
		{1e9, 0x7BFF},
		{-1e9, 0xFBFF},
		{math.MaxFloat32, 0x7BFF},
		{-math.MaxFloat32, 0xFBFF},
	} {
		if got := HalfFromFloat32(tc.in); got != tc.want {
			t.Errorf("HalfFromFloat32(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

func TestHalfNaN(t *testing.T) {
	for _, bits := range []uint32{0x7fc00000, 0x7f800001, 0x7fbfffff, 0xffc00000, 0xff800001} {
		f := math.Float32frombits(bits)
		h := HalfFromFloat32(f)
		want := uint16(0x7E00) | uint16(bits>>16)&0x8000
		if h != want {
			t.Errorf("NaN %#08x -> %#04x, want %#04x", bits, h, want)
		}
		if back := Float32FromHalf(h); back == back {
			t.Errorf("NaN %#08x decodes to %v", bits, back)
		}
	}
}

// halfValue is an independent float64 reference for binary16 bits.
func halfValue(h uint16) float64 {
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	var v float64
	switch e {
	case 0x1f:
		if m != 0 {
			return math.NaN()
		}
		v = math.Inf(1)
	case 0:
		v = math.Ldexp(m, -24)
	default:
		v = math.Ldexp(1+m/1024, e-15)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

func TestFloat32FromHalfAll(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got := Float32FromHalf(h)
		want := halfValue(h)
		if math.IsNaN(want) {
			if got == got {
				t.Fatalf("%#04x: got %v, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("%#04x: got %v, want %v", h, got, want)
		}
		// Every representable value encodes back to itself.
		if back := HalfFromFloat32(got); back != h {
			t.Fatalf("%#04x -> %v -> %#04x", h, got, back)
		}
	}
	// The codec inlines the normal range; it must agree on every pattern.
	all := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(all[2*i:], uint16(i))
	}
	dec := make([]float32, 1<<16)
	if err := (FP16{}).Decode(dec, all); err != nil {
		t.Fatal(err)
	}
	for i, got := range dec {
		if want := Float32FromHalf(uint16(i)); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("Decode(%#04x) = %#08x, Float32FromHalf %#08x", i, math.Float32bits(got), math.Float32bits(want))
		}
	}
}

// refHalf rounds f to binary16 by searching the sorted table of half values
// — a method unrelated to the bit twiddling under test.
func refHalf(f float32) uint16 {
	x := math.Abs(float64(f))
	var sign uint16
	if math.Signbit(float64(f)) {
		sign = 0x8000
	}
	if x >= 65520 {
		return sign | 0x7BFF
	}
	// Positive finite halves 0x0000..0x7BFF are increasing; treat 0x7C00
	// as 65536, the next step, for the comparison only.
	val := func(h int) float64 {
		if h == 0x7C00 {
			return 65536
		}
		return halfValue(uint16(h))
	}
	lo := sort.Search(0x7C00, func(i int) bool { return val(i) > x }) - 1
	hi := lo + 1
	d1, d2 := x-val(lo), val(hi)-x
	switch {
	case d1 < d2:
		return sign | uint16(lo)
	case d2 < d1:
		return sign | uint16(hi)
	case lo&1 == 0:
		return sign | uint16(lo)
	default:
		return sign | uint16(hi)
	}
}

func TestHalfFromFloat32MatchesReference(t *testing.T) {
	var in []float32
	check := func(bits uint32) {
		f := math.Float32frombits(bits)
		if f != f || math.IsInf(float64(f), 0) {
			return
		}
		in = append(in, f)
		if got, want := HalfFromFloat32(f), refHalf(f); got != want {
			t.Fatalf("%g (%#08x): got %#04x, want %#04x", f, bits, got, want)
		}
	}
	// Every exponent with the mantissa patterns around rounding boundaries.
	mants := []uint32{0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x3001,
		0x7fe000, 0x7fefff, 0x7ff000, 0x7ff001, 0x7fffff, 0x400000, 0x401000, 0x403000}
	for exp := uint32(0); exp < 0xff; exp++ {
		for _, m := range mants {
			check(exp<<23 | m)
			check(1<<31 | exp<<23 | m)
		}
		// Subnormal boundaries shift with the exponent: probe the tie
		// points for every shift.
		for s := uint32(13); s <= 24; s++ {
			half := uint32(1) << (s - 1)
			for _, m := range []uint32{half - 1, half, half + 1, 3 * half, 5 * half} {
				check(exp<<23 | m&0x7fffff)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		check(r.Uint32())
	}
	// The codec inlines the normal range; it must agree everywhere.
	enc := FP16{}.Encode(nil, in)
	for i, f := range in {
		if got, want := binary.LittleEndian.Uint16(enc[2*i:]), HalfFromFloat32(f); got != want {
			t.Fatalf("Encode(%g) = %#04x, HalfFromFloat32 %#04x", f, got, want)
		}
	}
}

func TestHalfRelativeError(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const bound = 1.0 / 2048 // 2^-11: half a unit in the last place
	for range 100_000 {
		// Log-uniform over the normal half range.
		x := float32(math.Exp2(r.Float64()*30 - 14))
		if x > 65504 {
			continue
		}
		if r.IntN(2) == 0 {
			x = -x
		}
		y := Float32FromHalf(HalfFromFloat32(x))
		if rel := math.Abs(float64(y-x)) / math.Abs(float64(x)); rel > bound {
			t.Fatalf("%g -> %g: relative error %g > 2^-11", x, y, rel)
		}
	}
}

func TestFP16CodecRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	src := make([]float32, 1001)
	for i := range src {
		src[i] = float32(r.NormFloat64())
	}
	enc := FP16{}.Encode([]byte("prefix"), src)
	if string(enc[:6]) != "prefix" || len(enc) != 6+2*len(src) {
		t.Fatalf("Encode did not append: len %d", len(enc))
	}
	dst := make([]float32, len(src))
	if err := (FP16{}).Decode(dst, enc[6:]); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if want := Float32FromHalf(HalfFromFloat32(src[i])); dst[i] != want {
			t.Fatalf("value %d: %v, want %v", i, dst[i], want)
		}
	}
	if err := (FP16{}).Decode(dst, enc[7:]); err == nil {
		t.Fatal("short input accepted")
	}
	if err := (FP16{}).Decode(dst[:3], enc[6:]); err == nil {
		t.Fatal("long input accepted")
	}
}
