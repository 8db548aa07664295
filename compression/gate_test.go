package compression

import (
	"testing"
	"time"
)

// The stage runs while nothing is measured, on links slower than what it
// saves, and on a probe now and then; on fast links, or when the data
// does not shrink, it is skipped.
func TestGate(t *testing.T) {
	var g Gate
	if !g.Use(1e9) {
		t.Fatal("skipped before anything was measured")
	}
	// 100 MB/s through the stage at 2×: pays below 50 MB/s of link.
	g.Observe(StageStats{Raw: 1_000_000, Out: 500_000, Took: 10 * time.Millisecond})
	if !g.Use(10e6) || !g.Use(0) {
		t.Fatal("skipped on a 10 MB/s link (or an unmeasured one), where it halves the time on the wire")
	}
	used := 0
	for range 2 * probeEvery {
		if g.Use(1e9) {
			used++
		}
	}
	if used != 2 {
		t.Fatalf("on a 1 GB/s link the stage ran %d times in %d frames, want only the 2 probes", used, 2*probeEvery)
	}
	// Data that stops shrinking makes even a slow link skip it.
	for range 20 {
		g.Observe(StageStats{Raw: 1_000_000, Out: 999_000, Took: 10 * time.Millisecond})
	}
	if g.Use(1e6) {
		t.Fatal("ran the stage for incompressible data on a 1 MB/s link")
	}
	g.Observe(StageStats{}) // no stage ran: nothing learned, no panic
}

// EncodePartStats reports the stage's input, output and time; without a
// stage it reports nothing.
func TestEncodePartStats(t *testing.T) {
	v := make([]float32, 4096) // zeros: compressible
	_, st, err := EncodePartStats(nil, FP32{}, LosslessZstd, v)
	if err != nil || st.Raw != 4*len(v) || st.Out <= 0 || st.Out >= st.Raw || st.Took <= 0 {
		t.Fatalf("zstd on zeros: %+v, %v", st, err)
	}
	if _, st, err := EncodePartStats(nil, FP32{}, LosslessNone, v); err != nil || st != (StageStats{}) {
		t.Fatalf("no stage: %+v, %v", st, err)
	}
}
