package allreduce

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

func peersN(n int) []peer.ID {
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = testutil.PeerID(i)
	}
	return out
}

// Groups never exceed the maximum, cover every peer once per round,
// rotate (a peer's partners change from round to round), and every peer
// computes the same groups whatever order it lists the members in.
func TestMoshpitGroupsShape(t *testing.T) {
	for _, c := range []struct{ n, maxGroup, dims int }{{27, 3, 3}, {20, 4, 3}, {16, 4, 2}, {5, 8, 1}, {100, 10, 2}} {
		peers := peersN(c.n)
		g := NewMoshpitGrid("run", peers, c.maxGroup)
		if g.Dims != c.dims {
			t.Errorf("n=%d max=%d: %d dims, want %d", c.n, c.maxGroup, g.Dims, c.dims)
		}
		shuffled := slices.Clone(peers)
		rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		g2 := NewMoshpitGrid("run", shuffled, c.maxGroup)
		for r := uint64(0); r < uint64(g.Dims); r++ {
			groups := g.Groups(r)
			if fmt.Sprint(groups) != fmt.Sprint(g2.Groups(r)) {
				t.Fatalf("n=%d round %d: groups depend on the order peers were listed in", c.n, r)
			}
			seen := map[peer.ID]int{}
			for _, grp := range groups {
				if len(grp) > c.maxGroup {
					t.Errorf("n=%d round %d: group of %d > max %d", c.n, r, len(grp), c.maxGroup)
				}
				for _, p := range grp {
					seen[p]++
				}
			}
			if len(seen) != c.n {
				t.Fatalf("n=%d round %d: %d peers grouped, want %d", c.n, r, len(seen), c.n)
			}
			for p, k := range seen {
				if k != 1 {
					t.Fatalf("n=%d round %d: %s in %d groups", c.n, r, p, k)
				}
			}
		}
		if g.Dims > 1 {
			p := peers[0]
			if slices.Equal(g.GroupOf(0, p), g.GroupOf(1, p)) {
				t.Errorf("n=%d: peer's group did not rotate between rounds", c.n)
			}
		}
	}
}

// Averaging within the groups of d consecutive rounds gives every peer
// the exact mean on a full grid, and shrinks the spread on a partial one.
func TestMoshpitRoundsReachTheMean(t *testing.T) {
	for _, c := range []struct {
		n, maxGroup int
		exact       bool
	}{{27, 3, true}, {16, 4, true}, {20, 4, false}, {50, 8, false}} {
		peers := peersN(c.n)
		g := NewMoshpitGrid("run", peers, c.maxGroup)
		rng := rand.New(rand.NewPCG(uint64(c.n), 7))
		val := map[peer.ID]float64{}
		mean := 0.0
		for _, p := range peers {
			val[p] = rng.NormFloat64()
			mean += val[p] / float64(c.n)
		}
		spread := func() float64 {
			s := 0.0
			for _, v := range val {
				s = max(s, math.Abs(v-mean))
			}
			return s
		}
		before := spread()
		for r := uint64(0); r < uint64(3*g.Dims); r++ {
			for _, grp := range g.Groups(r) {
				avg := 0.0
				for _, p := range grp {
					avg += val[p] / float64(len(grp))
				}
				for _, p := range grp {
					val[p] = avg
				}
			}
			if c.exact && r == uint64(g.Dims-1) && spread() > 1e-12 {
				t.Fatalf("n=%d: after %d rounds the spread is %g, want the exact mean", c.n, g.Dims, spread())
			}
		}
		if after := spread(); after > before/10 {
			t.Errorf("n=%d: spread %g → %g after %d rounds: averaging does not spread the mean", c.n, before, after, 3*g.Dims)
		}
	}
}

// Moshpit rounds run on the real all-reduce: 9 peers in groups of at most
// 3 hold the exact mean of everyone's vector after two rounds, each group
// bit-identical inside.
func TestMoshpitOverAllReduce(t *testing.T) {
	_, ts, ids := memPeers(9)
	avs := make([]*Averager, 9)
	for i, tr := range ts {
		avs[i] = NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: 5 * time.Second})
	}
	g := NewMoshpitGrid("ab", ids, 3)
	if g.Dims != 2 {
		t.Fatalf("9 peers in groups of 3: %d dims, want 2", g.Dims)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	const n = 300
	vecs := make([][]float32, 9)
	want := make([]float64, n)
	for i := range vecs {
		vecs[i] = randVec(rng, n)
		for e, x := range vecs[i] {
			want[e] += float64(x) / 9
		}
	}
	for r := uint64(0); r < 2; r++ {
		next := make([][]float32, 9)
		var wg sync.WaitGroup
		errs := make([]error, 9)
		for i, p := range ids {
			grp := g.GroupOf(r, p)
			round := MoshpitRound("ab", 4, r, grp)
			next[i] = make([]float32, n)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = avs[i].AllReduce(context.Background(), round, vecs[i], next[i])
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, peer %d: %v", r, i, err)
			}
		}
		vecs = next
	}
	for i := range vecs {
		for e := range want {
			if d := math.Abs(float64(vecs[i][e]) - want[e]); d > 1e-5*(1+math.Abs(want[e])) {
				t.Fatalf("peer %d element %d: %v, want the global mean %v", i, e, vecs[i][e], want[e])
			}
		}
	}
}
