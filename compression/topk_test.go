package compression

import (
	"cmp"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// topIndices picks exactly the k largest magnitudes, ties to the lower
// index, the same as sorting would.
func TestTopIndicesMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{1, 2, 17, 1000, 10_007, 300_000} {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(r.IntN(21) - 10) // many ties, zeros, signs
			if n == 300_000 {
				src[i] = float32(r.NormFloat64()) // large: the sampled floor path
				if i%1000 == 0 {
					src[i] = 2.5 // 300 ties, near the 1% cut-off
				}
			}
		}
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			return cmp.Compare(math.Abs(float64(src[b])), math.Abs(float64(src[a])))
		})
		ks := []int{0, 1, n / 100, n / 3, n - 1, n}
		if n == 300_000 {
			// A k whose cut-off falls inside the planted run of 2.5s: the
			// sampled path must break those ties by index too.
			above := 0
			for _, x := range src {
				if math.Abs(float64(x)) > 2.5 {
					above++
				}
			}
			ks = append(ks, above+100)
		}
		for _, k := range ks {
			want := slices.Clone(order[:k])
			slices.Sort(want)
			if got := topIndices(src, k); !slices.Equal(got, want) {
				t.Fatalf("n=%d k=%d: got %v, want %v", n, k, got, want)
			}
		}
	}
}

// A top-k frame decodes to the kept values at their places and zeros
// elsewhere; Sparse is exact, signed zeros included.
func TestTopKRoundTrip(t *testing.T) {
	src := normals(5000, 3)
	frame, err := EncodePart(nil, TopK{Fraction: 0.02}, LosslessNone, src)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(src))
	if err := DecodePart(got, frame); err != nil {
		t.Fatal(err)
	}
	kept := 0
	var minKept, maxDropped float64 = math.Inf(1), 0
	for i, x := range got {
		if x != 0 {
			kept++
			if x != src[i] {
				t.Fatalf("value %d changed: %v → %v", i, src[i], x)
			}
			minKept = min(minKept, math.Abs(float64(x)))
		} else {
			maxDropped = max(maxDropped, math.Abs(float64(src[i])))
		}
	}
	if kept != 100 || minKept < maxDropped {
		t.Errorf("kept %d (want 100); smallest kept %v, largest dropped %v", kept, minKept, maxDropped)
	}
	if r := float64(4*len(src)) / float64(len(frame)); r < 15 {
		t.Errorf("2%% top-k is only %.1f× smaller than fp32", r)
	}
	// fp16 values: the same places, values rounded to half precision.
	hf, _ := EncodePart(nil, TopK{Fraction: 0.02, Half: true}, LosslessNone, src)
	if len(hf) >= len(frame) {
		t.Errorf("fp16 values did not shrink the frame: %d vs %d bytes", len(hf), len(frame))
	}
	hgot := make([]float32, len(src))
	if err := DecodePart(hgot, hf); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if (got[i] != 0) != (hgot[i] != 0) || hgot[i] != Float32FromHalf(HalfFromFloat32(got[i])) {
			t.Fatalf("value %d: fp16 top-k %v, fp32 top-k %v", i, hgot[i], got[i])
		}
	}
	sp := []float32{0, 3, float32(math.Copysign(0, -1)), 0, -2.5}
	frame, _ = EncodePart(nil, Sparse{}, LosslessNone, sp)
	got = make([]float32, len(sp))
	if err := DecodePart(got, frame); err != nil {
		t.Fatal(err)
	}
	for i := range sp {
		if math.Float32bits(got[i]) != math.Float32bits(sp[i]) {
			t.Fatalf("sparse value %d: %v, want %v", i, got[i], sp[i])
		}
	}
}

// Hostile sparse payloads are refused before they write out of bounds.
func TestSparseRejectsMalformed(t *testing.T) {
	good := TopK{Fraction: 0.5}.Encode(nil, []float32{1, -2, 3, 0, 5, 6})
	mut := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"empty":        nil,
		"k > count":    mut(func(b []byte) []byte { b[0] = 7; return b }),
		"truncated":    good[:len(good)-1],
		"stray bytes":  append(append([]byte(nil), good...), 0),
		"gap past end": mut(func(b []byte) []byte { b[7] = 9; return b }),
		"bad uvarint":  mut(func(b []byte) []byte { b[5], b[6], b[7] = 0x80, 0x80, 0x80; return b }),
		"bad width":    mut(func(b []byte) []byte { b[4] = 3; return b }),
		"padded gap":   append(append(append([]byte(nil), good[:5]...), good[5]|0x80, 0), good[6:]...),
	} {
		dst := make([]float32, 6)
		if err := (TopK{}).Decode(dst, b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	for _, bad := range []string{"topk:0", "topk:1.5", "topk:x"} {
		if _, err := ParseCodec(bad); err == nil {
			t.Errorf("ParseCodec(%q) accepted", bad)
		}
	}
	if c, err := ParseCodec("topk:0.05"); err != nil || c.(TopK).Fraction != 0.05 || c.(TopK).Half {
		t.Errorf("ParseCodec(topk:0.05) = %v, %v", c, err)
	}
	if c, err := ParseCodec("topk:0.01:fp16"); err != nil || !c.(TopK).Half {
		t.Errorf("ParseCodec(topk:0.01:fp16) = %v, %v", c, err)
	}
	if _, err := ParseCodec("topk:0.01:int8"); err == nil {
		t.Error("ParseCodec(topk:0.01:int8) accepted")
	}
}

// Selection speed at the size the issue names (top 1% of 16M values).
func BenchmarkTopK16M(b *testing.B) {
	src := normals(16<<20, 5)
	b.SetBytes(4 * int64(len(src)))
	var dst []byte
	for b.Loop() {
		dst = TopK{Fraction: 0.01}.Encode(dst[:0], src)
	}
}
