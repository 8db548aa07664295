package compression

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodePart feeds arbitrary frames to the decoder. Seeds live in
// testdata/fuzz/FuzzDecodePart; regenerate them after a format change with
//
//	go test ./compression -run TestWriteFuzzSeeds -write-seeds
func FuzzDecodePart(f *testing.F) {
	f.Fuzz(func(t *testing.T, frame []byte) {
		n, err := PeekCount(frame)
		if err != nil {
			if DecodePart(nil, frame) == nil {
				t.Fatalf("PeekCount refused (%v) but DecodePart(nil) accepted", err)
			}
			return
		}
		if n > 1<<16 {
			n = 1 << 16 // keep each run cheap; DecodePart must then refuse
		}
		dst := make([]float32, n)
		err = DecodePart(dst, frame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrChecksum) &&
				!errors.Is(err, ErrNonFinite) && !errors.Is(err, ErrCountMismatch) {
				t.Fatalf("error outside the documented classes: %v", err)
			}
			for i, x := range dst {
				if x != 0 {
					t.Fatalf("dst[%d] = %v left behind after %v", i, x, err)
				}
			}
			return
		}
		if i := FirstNonFinite(dst); i >= 0 {
			t.Fatalf("accepted non-finite value %v at %d", dst[i], i)
		}
		// Decoding is a pure function of the bytes.
		again := make([]float32, n)
		if err := DecodePart(again, frame); err != nil {
			t.Fatalf("second decode failed: %v", err)
		}
		for i := range dst {
			if math.Float32bits(dst[i]) != math.Float32bits(again[i]) {
				t.Fatalf("value %d decoded differently twice", i)
			}
		}
		// Whatever decodes re-encodes, with the same codec, to values that
		// decode identically: the float codecs are idempotent on their
		// output. (The blockwise quantizers are not: a crafted block whose
		// levels stay far below the maximum is rescaled.)
		c, _ := Lookup(CodecID(frame[1]))
		if c.ID() == IDInt8 || c.ID() == IDInt4 || c.ID() == IDTopK || c.ID() == IDMixed {
			return // top-k keeps only its fraction of a crafted dense part; a Mixed's runs are in its bytes, not its value
		}
		re, err := EncodePart(nil, c, Lossless(frame[2]), dst)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if err := DecodePart(again, re); err != nil {
			t.Fatalf("decode of re-encoded frame: %v", err)
		}
		for i := range dst {
			if math.Float32bits(dst[i]) != math.Float32bits(again[i]) {
				t.Fatalf("value %d changed through re-encoding", i)
			}
		}
	})
}

var writeSeeds = flag.Bool("write-seeds", false, "rewrite testdata/fuzz/FuzzDecodePart")

// TestWriteFuzzSeeds writes the seed corpus: valid frames of every codec and
// lossless stage, and near misses of each check.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to regenerate the corpus")
	}
	seeds := map[string][]byte{}
	v := normals(64, 42)
	for _, c := range Codecs() {
		for _, n := range []int{0, 3, 64} {
			seeds[fmt.Sprintf("valid-%s-none-%d", c.Name(), n)] = mustEncode(t, c, LosslessNone, v[:n])
		}
		// EncodePart falls back to none for small parts; these keep zstd.
		raw := c.Encode(nil, v[:3])
		seeds["valid-"+c.Name()+"-zstd-3"] = buildFrame(1, c.ID(), LosslessZstd, 3, uint32(len(raw)), zstdPayload(t, raw, c.ShuffleWidth()))
		seeds["valid-"+c.Name()+"-zstd-4096"] = mustEncode(t, c, LosslessZstd, normals(4096, 43))
	}
	mixed := Mixed{Segments: []Segment{{10, FP16{}}, {40, TopK{Fraction: 0.1}}, {14, Int8{Block: 16}}}}
	seeds["valid-mixed-none-64"] = mustEncode(t, mixed, LosslessNone, v)
	seeds["valid-mixed-zstd-4096"] = mustEncode(t, Mixed{Segments: []Segment{{96, FP16{}}, {4000, Int4{}}}}, LosslessZstd, normals(4096, 45))
	good := mustEncode(t, FP16{}, LosslessZstd, normals(4096, 44))
	seeds["bad-version"] = resealed(append([]byte{2}, good[1:]...))
	seeds["bad-codec"] = resealed(append([]byte{1, 9}, good[2:]...))
	seeds["bad-checksum"] = append(bytes.Clone(good[:len(good)-1]), ^good[len(good)-1])
	seeds["truncated"] = good[:len(good)/2]
	seeds["rawlen-lie"] = buildFrame(1, IDFP32, LosslessZstd, 16, 60, zstdPayload(t, make([]byte, 64), 4))
	seeds["nan"] = buildFrame(1, IDFP32, LosslessNone, 1, 4, []byte{0, 0, 0xc0, 0x7f})
	seeds["inf-half"] = buildFrame(1, IDFP16, LosslessNone, 1, 2, []byte{0, 0x7c})

	dir := filepath.Join("testdata", "fuzz", "FuzzDecodePart")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
