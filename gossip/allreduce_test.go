package gossip

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
)

func codec(t testing.TB, name string) compression.Codec {
	t.Helper()
	c, err := compression.ByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func memPeers(n int) (*MemNetwork, []*MemTransport, []peer.ID) {
	net := NewMemNetwork()
	var ts []*MemTransport
	var ids []peer.ID
	for i := 0; i < n; i++ {
		id := testID(i)
		ts = append(ts, net.Add(id))
		ids = append(ids, id)
	}
	return net, ts, ids
}

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// runRound all-reduces vecs among all peers and returns each peer's output.
func runRound(t *testing.T, avs []*Averager, r Round, vecs [][]float32) ([][]float32, []error) {
	t.Helper()
	outs := make([][]float32, len(avs))
	errs := make([]error, len(avs))
	var wg sync.WaitGroup
	for i := range avs {
		outs[i] = make([]float32, len(vecs[i]))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = avs[i].AllReduce(context.Background(), r, vecs[i], outs[i])
		}(i)
	}
	wg.Wait()
	return outs, errs
}

func TestAllReduceBitIdenticalWeightedMean(t *testing.T) {
	for _, name := range []string{"fp32", "fp16"} {
		for _, k := range []int{1, 2, 3, 5} {
			t.Run(fmt.Sprintf("%s/%d", name, k), func(t *testing.T) {
				_, ts, ids := memPeers(k)
				var avs []*Averager
				for _, tr := range ts {
					avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, name), RoundTimeout: 5 * time.Second}))
				}
				rng := rand.New(rand.NewPCG(1, uint64(k)))
				const n = 1001 // not divisible by k: parts differ in size
				vecs := make([][]float32, k)
				samples := make([]int, k)
				for i := range vecs {
					vecs[i] = randVec(rng, n)
					samples[i] = 1 + rng.IntN(64)
				}
				r := Round{Step: 7, Members: ids, Samples: samples}
				r.ID = RoundID("ab", r.Step, 0, ids, samples, nil)
				outs, errs := runRound(t, avs, r, vecs)
				for i, err := range errs {
					if err != nil {
						t.Fatalf("peer %d: %v", i, err)
					}
				}
				for i := 1; i < k; i++ {
					for e := range outs[0] {
						if math.Float32bits(outs[i][e]) != math.Float32bits(outs[0][e]) {
							t.Fatalf("peer %d differs from peer 0 at %d: %v vs %v", i, e, outs[i][e], outs[0][e])
						}
					}
				}
				// Against a float64 reference of the weighted mean.
				tol := 1e-5
				if name == "fp16" {
					tol = 2e-3
				}
				var total float64
				for _, s := range samples {
					total += float64(s)
				}
				for e := 0; e < n; e++ {
					var want float64
					for i := range vecs {
						want += float64(samples[i]) * float64(vecs[i][e])
					}
					want /= total
					if d := math.Abs(float64(outs[0][e]) - want); d > tol*(1+math.Abs(want)) {
						t.Fatalf("element %d: got %v want %v", e, outs[0][e], want)
					}
				}
			})
		}
	}
}

func TestAllReduceLocalUnchangedAndDeadPeerFailsRound(t *testing.T) {
	net, ts, ids := memPeers(3)
	net.Timeout = 300 * time.Millisecond
	var avs []*Averager
	for _, tr := range ts {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: time.Second}))
	}
	rng := rand.New(rand.NewPCG(2, 2))
	vecs := [][]float32{randVec(rng, 300), randVec(rng, 300), randVec(rng, 300)}
	keep := append([]float32(nil), vecs[0]...)
	samples := []int{1, 1, 1}
	r := Round{Step: 1, Members: ids, Samples: samples, ID: RoundID("ab", 1, 0, ids, samples, nil)}
	net.Isolate(ids[2]) // crashed before the round
	outs := make([][]float32, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		outs[i] = make([]float32, 300)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = avs[i].AllReduce(context.Background(), r, vecs[i], outs[i])
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Fatalf("peer %d: round with a dead member reported success", i)
		}
	}
	for e := range keep {
		if vecs[0][e] != keep[e] {
			t.Fatal("AllReduce modified its input vector")
		}
	}
}

func TestAllReduceRejectsNonMember(t *testing.T) {
	_, ts, ids := memPeers(3)
	av := NewAverager(ts[0], AveragerConfig{Codec: codec(t, "fp32")})
	r := Round{ID: "aa", Members: ids[1:], Samples: []int{1, 1}}
	if err := av.AllReduce(context.Background(), r, make([]float32, 4), make([]float32, 4)); err == nil {
		t.Fatal("expected an error for a round that does not include us")
	}
}

func TestWeightedMeanDeterministic(t *testing.T) {
	xs := [][]float32{{1, 2, 3}, {3, 4, 5}}
	got := WeightedMean(xs, []int{1, 3})
	want := []float32{2.5, 3.5, 4.5}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v want %v", got, want)
		}
	}
}

// Many rounds in a row: finished rounds must not pile up and crowd out
// the next ones (a peer refuses senders of unknown rounds once too many
// are pending).
func TestAllReduceManyRounds(t *testing.T) {
	_, ts, ids := memPeers(3)
	var avs []*Averager
	for _, tr := range ts {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: 5 * time.Second}))
	}
	rng := rand.New(rand.NewPCG(3, 3))
	vecs := [][]float32{randVec(rng, 64), randVec(rng, 64), randVec(rng, 64)}
	samples := []int{1, 2, 3}
	for step := uint64(0); step < 5*maxPendingRounds; step++ {
		r := Round{Step: step, Members: ids, Samples: samples, ID: RoundID("ab", step, 0, ids, samples, nil)}
		_, errs := runRound(t, avs, r, vecs)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, peer %d: %v", step, i, err)
			}
		}
	}
}
