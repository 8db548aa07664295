package averaging

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/gossip/gossiptest"
)

// psSwarm is k peers that run PowerSGD rounds together.
type psSwarm struct {
	net  *gossip.MemNetwork
	avs  []*allreduce.Averager
	pss  []*PowerSGD
	ids  []peer.ID
	step uint64
}

func newPSSwarm(t *testing.T, k int, cfg PowerSGDConfig) (*psSwarm, []*PowerSGD, func(local [][]float32) ([][]float32, []error)) {
	t.Helper()
	net, ts, ids := memPeers(k)
	var avs []*allreduce.Averager
	var pss []*PowerSGD
	for _, tr := range ts {
		avs = append(avs, allreduce.NewAverager(tr, allreduce.AveragerConfig{RoundTimeout: 2 * time.Second}))
		ps, err := NewPowerSGD(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pss = append(pss, ps)
	}
	sw := &psSwarm{net: net, avs: avs, pss: pss, ids: ids}
	samples := slices.Repeat([]int{1}, k)
	run := func(local [][]float32) ([][]float32, []error) {
		r := allreduce.Round{Step: sw.step, Members: ids, Samples: samples, ID: allreduce.RoundID("ps", sw.step, 0, ids, samples, nil)}
		sw.step++
		out := make([][]float32, k)
		errs := make([]error, k)
		var wg sync.WaitGroup
		for i := range k {
			out[i] = make([]float32, len(local[i]))
			wg.Go(func() { errs[i] = pss[i].AllReduce(context.Background(), avs[i], r, local[i], out[i]) })
		}
		wg.Wait()
		return out, errs
	}
	return sw, pss, run
}

// rankTwo returns a rows×cols matrix of rank two.
func rankTwo(rng *rand.Rand, rows, cols int) []float32 {
	u, v := randVec(rng, 2*rows), randVec(rng, 2*cols)
	m := make([]float32, rows*cols)
	for i := range rows {
		for j := range cols {
			m[i*cols+j] = u[2*i]*v[2*j] + u[2*i+1]*v[2*j+1]
		}
	}
	return m
}

func meanOf(vs [][]float32) []float32 {
	out := make([]float32, len(vs[0]))
	for e := range out {
		var s float64
		for _, v := range vs {
			s += float64(v[e])
		}
		out[e] = float32(s / float64(len(vs)))
	}
	return out
}

var psShapes = [][]int{{40, 30}, {30}, {30, 5}, {5}}

// When the average gradient's matrices have rank ≤ r, one power step
// from any Q recovers them; the dense tensors come back at fp16
// precision; every member holds the same bits.
func TestPowerSGDRecoversLowRank(t *testing.T) {
	cfg := PowerSGDConfig{Rank: 2, Shapes: psShapes, MinMatrix: 200, Seed: 1}
	_, pss, run := newPSSwarm(t, 3, cfg)
	if got, want := pss[0].WireValues(), 30+5+30*5+40*2+30*2; got != want {
		t.Fatalf("%d values on the wire per step, want %d (dense 185, P 80, Q 60)", got, want)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	// Every peer's matrix is a multiple of one rank-2 matrix, so the mean is rank 2.
	base := rankTwo(rng, 40, 30)
	local := make([][]float32, 3)
	for i := range local {
		v := slices.Concat(make([]float32, 1200), randVec(rng, 30), randVec(rng, 150), randVec(rng, 5))
		for e, x := range base {
			v[e] = x * float32(i+1)
		}
		local[i] = v
	}
	out, errs := run(local)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
	}
	for i := 1; i < 3; i++ {
		for e := range out[0] {
			if math.Float32bits(out[i][e]) != math.Float32bits(out[0][e]) {
				t.Fatalf("value %d differs between peers 0 and %d", e, i)
			}
		}
	}
	mean := meanOf(local)
	for e, want := range mean {
		tol := 1e-4 * (1 + math.Abs(float64(want)))
		if e >= 1200 {
			tol = 2e-3 * (1 + math.Abs(float64(want))) // fp16
		}
		if d := math.Abs(float64(out[0][e] - want)); d > tol {
			t.Fatalf("value %d: %v, mean %v", e, out[0][e], want)
		}
	}
}

// A full-rank gradient is not recovered in one step, but error feedback
// delivers what was left out later: the running mean of the outputs for
// a fixed gradient converges to the gradient.
func TestPowerSGDErrorFeedbackCatchesUp(t *testing.T) {
	cfg := PowerSGDConfig{Rank: 1, Shapes: [][]int{{20, 20}}, MinMatrix: 1, Seed: 2}
	_, _, run := newPSSwarm(t, 2, cfg)
	rng := rand.New(rand.NewPCG(4, 4))
	local := [][]float32{randVec(rng, 400), randVec(rng, 400)}
	mean := meanOf(local)
	sum := make([]float64, 400)
	relErr := func(steps int) float64 {
		var num, den float64
		for e, m := range mean {
			d := sum[e]/float64(steps) - float64(m)
			num += d * d
			den += float64(m) * float64(m)
		}
		return math.Sqrt(num / den)
	}
	var first float64
	for step := 1; step <= 200; step++ {
		out, errs := run(local)
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for e, x := range out[0] {
			sum[e] += float64(x)
		}
		if step == 1 {
			first = relErr(1)
		}
	}
	if last := relErr(200); !(first > 0.5 && last < 0.1*first) {
		t.Fatalf("relative error of the running mean: %.3f after 1 step, %.3f after 200", first, last)
	}
}

// A failed round changes nothing: not the residual, not the warm start.
func TestPowerSGDFailedRoundKeepsState(t *testing.T) {
	cfg := PowerSGDConfig{Rank: 2, Shapes: psShapes, MinMatrix: 200, Seed: 1}
	sw, pss, run := newPSSwarm(t, 2, cfg)
	rng := rand.New(rand.NewPCG(5, 5))
	local := [][]float32{randVec(rng, 1385), randVec(rng, 1385)}
	if _, errs := run(local); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	res, q := slices.Clone(pss[0].residual), slices.Clone(pss[0].q)
	if !slices.ContainsFunc(res, func(x float32) bool { return x != 0 }) {
		t.Fatal("no residual after a rank-2 step of a random gradient: the test checks nothing")
	}
	sw.net.Isolate(sw.ids[1])
	if _, errs := run(local); errs[0] == nil {
		t.Fatal("a round with an isolated member succeeded")
	}
	if !slices.Equal(res, pss[0].residual) || !slices.Equal(q, pss[0].q) {
		t.Fatal("a failed round changed the residual or Q")
	}
}

func TestOrthonormalize(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	const rows, rank = 50, 4
	p := randVec(rng, rows*rank)
	orthonormalize(p, rows, rank)
	for a := range rank {
		for b := range rank {
			var dot float64
			for i := range rows {
				dot += float64(p[i*rank+a]) * float64(p[i*rank+b])
			}
			want := 0.0
			if a == b {
				want = 1
			}
			if math.Abs(dot-want) > 1e-5 {
				t.Fatalf("columns %d·%d = %v, want %v", a, b, dot, want)
			}
		}
	}
}

func TestPowerSGDConfigErrors(t *testing.T) {
	for _, cfg := range []PowerSGDConfig{
		{Rank: 0, Shapes: psShapes},
		{Rank: 2, Shapes: [][]int{{5}, {3, 3}}, MinMatrix: 100},
		{Rank: 2, Shapes: [][]int{{0, 4}}},
	} {
		if _, err := NewPowerSGD(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

var (
	memPeers = gossiptest.MemPeers
	randVec  = gossiptest.RandVec
)
