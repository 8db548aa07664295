package allreduce

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/compression"
)

// Error feedback keeps exactly what the codec dropped from this peer's
// contribution (the part it owns goes through the codec too), adds it to
// the next round, and leaves it untouched when a round fails.
func TestAllReduceErrorFeedback(t *testing.T) {
	net, ts, ids := memPeers(2)
	codec := compression.Int4{Block: 16}
	avs := []*Averager{
		NewAverager(ts[0], AveragerConfig{Codec: codec, RoundTimeout: 2 * time.Second}),
		NewAverager(ts[1], AveragerConfig{Codec: codec, RoundTimeout: 2 * time.Second}),
	}
	rng := rand.New(rand.NewPCG(8, 8))
	const n = 200
	local := [][]float32{randVec(rng, n), randVec(rng, n)}
	res := [][]float32{make([]float32, n), make([]float32, n)}
	samples := []int{1, 1}
	run := func(step uint64) []error {
		r := Round{Step: step, Members: ids, Samples: samples, ID: RoundID("ab", step, 0, ids, samples, nil)}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = avs[i].AllReduceEF(context.Background(), r, local[i], res[i], make([]float32, n))
			}()
		}
		wg.Wait()
		return errs
	}
	for _, err := range run(0) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		r := Round{Members: ids}
		for j := range 2 {
			lo, hi := r.Bounds(n, j)
			dec := make([]float32, hi-lo)
			if err := codec.Decode(dec, codec.Encode(nil, local[i][lo:hi])); err != nil {
				t.Fatal(err)
			}
			nonzero := false
			for e := lo; e < hi; e++ {
				if want := local[i][e] - dec[e-lo]; math.Float32bits(res[i][e]) != math.Float32bits(want) {
					t.Fatalf("peer %d value %d: residual %v, want %v", i, e, res[i][e], want)
				}
				nonzero = nonzero || res[i][e] != 0
			}
			if !nonzero {
				t.Fatalf("peer %d: int4 dropped nothing; the test checks nothing", i)
			}
		}
	}
	// A failed round (peer 1 gone) leaves peer 0's residual as it was.
	before := append([]float32(nil), res[0]...)
	net.Isolate(ids[1])
	r := Round{Step: 1, Members: ids, Samples: samples, ID: RoundID("ab", 1, 0, ids, samples, nil)}
	if err := avs[0].AllReduceEF(context.Background(), r, local[0], res[0], make([]float32, n)); err == nil {
		t.Fatal("a round with a dead member succeeded")
	}
	for e := range before {
		if math.Float32bits(before[e]) != math.Float32bits(res[0][e]) {
			t.Fatalf("failed round changed the residual at %d", e)
		}
	}
}

// Under a per-tensor policy the small tensors travel in fp16 and the
// large ones in the run's codec, within one part, and every member still
// ends with the same bits.
func TestAllReducePolicy(t *testing.T) {
	_, ts, ids := memPeers(3)
	pol := compression.Policy{Large: compression.Int4{Block: 16}, Small: compression.FP16{}, Tensors: []int{500, 10, 300, 5}, SmallTensor: 100}
	var avs []*Averager
	for _, tr := range ts {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: pol.Large, PartCodec: pol.For, ResultCodec: pol.For, RoundTimeout: 2 * time.Second}))
	}
	rng := rand.New(rand.NewPCG(9, 9))
	const n = 815
	local := [][]float32{randVec(rng, n), randVec(rng, n), randVec(rng, n)}
	out := [][]float32{make([]float32, n), make([]float32, n), make([]float32, n)}
	samples := []int{1, 1, 1}
	r := Round{Members: ids, Samples: samples, ID: RoundID("ab", 0, 0, ids, samples, nil)}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() { errs[i] = avs[i].AllReduceEF(context.Background(), r, local[i], make([]float32, n), out[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
	}
	var smallErr, largeErr float64
	for e := range n {
		for i := 1; i < 3; i++ {
			if math.Float32bits(out[i][e]) != math.Float32bits(out[0][e]) {
				t.Fatalf("value %d differs between peers 0 and %d", e, i)
			}
		}
		mean := (float64(local[0][e]) + float64(local[1][e]) + float64(local[2][e])) / 3
		d := math.Abs(float64(out[0][e]) - mean)
		if small := (e >= 500 && e < 510) || e >= 810; small {
			smallErr = max(smallErr, d)
		} else {
			largeErr = max(largeErr, d)
		}
	}
	// fp16 is good to ~1e-3 on these magnitudes, int4 to ~1e-1.
	if smallErr > 4e-3 || largeErr < 2e-2 {
		t.Fatalf("largest error %.2g in the small tensors, %.2g in the large: the policy was not applied", smallErr, largeErr)
	}
}

// The averager runs the lossless stage only where it pays: on a link
// faster than the stage's measured gain it sends frames without it, on a
// slow link with it.
func TestAveragerSkipsLosslessOnFastLinks(t *testing.T) {
	_, ts, _ := memPeers(1)
	a := NewAverager(ts[0], AveragerConfig{Codec: compression.FP32{}, Lossless: compression.LosslessZstd})
	// The stage was measured at 100 MB/s for a 2× ratio: it pays below 50 MB/s.
	a.gate.Observe(compression.StageStats{Raw: 1_000_000, Out: 500_000, Took: 10 * time.Millisecond})
	values := make([]float32, 4096) // zeros: zstd shrinks them
	stage := func(link float64) compression.Lossless {
		a.uplink.Store(math.Float64bits(link))
		frame, err := a.encodeAppend(nil, compression.FP32{}, values)
		if err != nil {
			t.Fatal(err)
		}
		return compression.Lossless(frame[2]) // the frame header's lossless id
	}
	if got := stage(1e6); got != compression.LosslessZstd {
		t.Fatalf("on a 1 MB/s link the frame went with %v", got)
	}
	if got := stage(1e12); got != compression.LosslessNone {
		t.Fatalf("on a 1 TB/s link the frame went with %v", got)
	}
}
