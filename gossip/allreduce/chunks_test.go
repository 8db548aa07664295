package allreduce

import (
	"math"
	"testing"

	"github.com/swarmtrain/swarmtrain/compression"
)

// A kept average decodes to what its chunks hold, and nothing out of
// shape gets past decodeChunks.
func TestDecodeChunks(t *testing.T) {
	const n = 2*chunkValues + 7
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i%97) - 48
	}
	var kept []byte
	for c := range chunkCount(n) {
		lo, hi := chunkBounds(n, c)
		f, err := compression.EncodePart([]byte{resultOK}, compression.FP32{}, compression.LosslessNone, vals[lo:hi])
		if err != nil {
			t.Fatal(err)
		}
		kept = keepChunk(kept, f)
	}
	got := make([]float32, n)
	if err := decodeChunks(got, kept); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(vals[i]) {
			t.Fatalf("value %d: %v, want %v", i, got[i], vals[i])
		}
	}
	for name, b := range map[string][]byte{
		"empty":            nil,
		"a chunk short":    kept[:len(kept)/2],
		"a byte after":     append(append([]byte(nil), kept...), 0),
		"a length too big": append([]byte{0xff, 0xff, 0xff, 0x7f}, kept[4:]...),
		"too few values":   kept[:len(kept)-1],
	} {
		if err := decodeChunks(got, b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDecodeChunks(f *testing.F) {
	one, _ := compression.EncodePart([]byte{resultOK}, compression.FP32{}, compression.LosslessNone, []float32{1, 2, 3})
	f.Add(keepChunk(nil, one), 3)
	f.Add([]byte{1, 0, 0, 0, 0}, 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 3*chunkValues {
			return
		}
		decodeChunks(make([]float32, n), b) // must not panic
	})
}
