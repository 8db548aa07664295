package compression

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFP32CodecBitExact(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	src := make([]float32, 4096)
	for i := range src {
		src[i] = math.Float32frombits(r.Uint32()) // includes NaN payloads, subnormals, -0
	}
	enc := FP32{}.Encode([]byte{9}, src)
	if enc[0] != 9 || len(enc) != 1+4*len(src) {
		t.Fatalf("Encode did not append: len %d", len(enc))
	}
	if got := enc[1:5]; got[0] != byte(math.Float32bits(src[0])) {
		t.Fatalf("not little endian: % x", got)
	}
	dst := make([]float32, len(src))
	if err := (FP32{}).Decode(dst, enc[1:]); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if math.Float32bits(dst[i]) != math.Float32bits(src[i]) {
			t.Fatalf("value %d: %#08x, want %#08x", i, math.Float32bits(dst[i]), math.Float32bits(src[i]))
		}
	}
	if err := (FP32{}).Decode(dst, enc[2:]); err == nil {
		t.Fatal("short input accepted")
	}
}
