package gossip

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
