package averaging

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/gossip/swarm"
)

// setupMoshpit is setup with the averager's result codec given too, and
// the averagers returned for their byte counts.
func setupMoshpit(t *testing.T, k, n, maxGroup int, codec, result compression.Codec) ([]Strategy, []*fakeEnv, []*allreduce.Averager, []peer.ID) {
	t.Helper()
	_, ts, ids := memPeers(k)
	slices.SortFunc(ts, func(a, b *gossip.MemTransport) int { return strings.Compare(string(a.Self()), string(b.Self())) })
	slices.Sort(ids)
	board := newRefBoard()
	var ss []Strategy
	var envs []*fakeEnv
	var avs []*allreduce.Averager
	for i, tr := range ts {
		av := allreduce.NewAverager(tr, allreduce.AveragerConfig{Codec: codec, Result: result, RoundTimeout: 10 * time.Second})
		s, err := New(Config{Averager: av, NumParams: n, Codec: codec, MaxGroup: maxGroup})
		if err != nil {
			t.Fatal(err)
		}
		ss, avs = append(ss, s), append(avs, av)
		envs = append(envs, &fakeEnv{view: swarm.View{Run: "t", Self: ids[i], Live: live(ids, ids[i], 0), MaxGroup: maxGroup}, params: make([]float32, n), board: board})
	}
	return ss, envs, avs, ids
}

func sentBy(avs []*allreduce.Averager) int64 {
	var b int64
	for _, av := range avs {
		b += av.BytesSent()
	}
	return b
}

// A lossy codec under Moshpit: a group's first meeting goes in fp32 and
// makes its reference; later meetings send int8 deltas from it (here
// with exact fp32 averages: (1 + 4) / (4 + 4) of the bytes). Every round conserves the group's parameters
// plus residuals (the owners' averages are exact here, so to float
// rounding), members of a group end bit-identical, and the swarm ends
// near the fp32 Moshpit run's state.
func TestMoshpitCodecAveragesDeltas(t *testing.T) {
	const k, n, steps = 4, 2048, 8
	ss, envs, avs, _ := setupMoshpit(t, k, n, 2, compression.Int8{}, compression.FP32{})
	ref, refEnvs, _, _ := setupMoshpit(t, k, n, 2, compression.FP32{}, nil)
	rng := rand.New(rand.NewPCG(11, 12))
	for i := range k {
		envs[i].params = randVec(rng, n)
		refEnvs[i].params = slices.Clone(envs[i].params)
	}
	var bytes []int64
	for step := range uint64(steps) {
		grads := make([][]float32, k)
		before := make([]float64, n) // Σ local step + residual
		for i := range k {
			grads[i] = randVec(rng, n)
			for j := range grads[i] {
				grads[i][j] *= 0.01
			}
			res := ss[i].(*moshpit).residual
			for j := range n {
				before[j] += float64(envs[i].params[j]-grads[i][j]) + float64(res[j])
			}
		}
		if step == 5 {
			// Member 0 holds another reference than its group (as if it
			// missed the group's last meeting): that group must go fp32.
			v := envs[0].view
			r := ss[0].(*moshpit).refs[groupKey(v.MoshpitGroup(step, v.Moshpit()))]
			r.tag = "00"
			for j := range r.params {
				r.params[j] += 0.5
			}
		}
		sent := sentBy(avs)
		outs, errs := stepAll(t, ss, envs, step, grads)
		bytes = append(bytes, sentBy(avs)-sent)
		refOuts, refErrs := stepAll(t, ref, refEnvs, step, grads)
		after := make([]float64, n)
		for i := range k {
			if errs[i] != nil || refErrs[i] != nil {
				t.Fatalf("step %d member %d: %v, %v", step, i, errs[i], refErrs[i])
			}
			envs[i].params = slices.Clone(outs[i].Params)
			refEnvs[i].params = slices.Clone(refOuts[i].Params)
			res := ss[i].(*moshpit).residual
			for j := range n {
				after[j] += float64(envs[i].params[j]) + float64(res[j])
			}
		}
		for j := range n {
			if d := math.Abs(after[j] - before[j]); d > 1e-4 {
				t.Fatalf("step %d: value %d: parameters plus residuals %v before the round, %v after", step, j, before[j], after[j])
			}
		}
		for i := range k {
			for _, p := range outs[i].Members {
				o := slices.IndexFunc(envs, func(e *fakeEnv) bool { return e.view.Self == p })
				if !slices.Equal(envs[o].params, envs[i].params) {
					t.Fatalf("step %d: members %d and %d of one group differ", step, i, o)
				}
			}
		}
	}
	// Steps 0 and 1 are the two groups' first meetings (fp32); then int8.
	if bytes[5] <= bytes[4] || bytes[5] >= bytes[0] {
		t.Fatalf("step 5 sent %d bytes: want one group in fp32 (between %d and %d)", bytes[5], bytes[4], bytes[0])
	}
	for s := 2; s < steps; s++ {
		if s == 5 {
			continue
		}
		if r := float64(bytes[s]) / float64(bytes[0]); r > 0.66 {
			t.Fatalf("step %d sent %d bytes, %.2f of the fp32 first meeting's %d: not int8 deltas", s, bytes[s], r, bytes[0])
		}
	}
	var worst float64
	for i := range k {
		for j := range n {
			worst = max(worst, math.Abs(float64(envs[i].params[j]-refEnvs[i].params[j])))
		}
	}
	// Each delta is a few steps of 0.01-sized updates: int8 keeps it to
	// about 0.01/127 per round, and the residual carries that on.
	if worst > 2e-3 {
		t.Fatalf("int8 Moshpit is %v from fp32 Moshpit after %d steps", worst, steps)
	}
	t.Logf("bytes per step %v; largest gap to fp32 Moshpit %.2g", bytes, worst)
}

// A change at one peer reaches every peer of a full grid in Dims rounds
// (one per dimension), with any codec: ⌈log_g N⌉. Partly filled grids
// leave lines with one peer, which skip a dimension; there the measured
// count is logged and bounded by Dims + 1.
func TestMoshpitReachesEveryPeer(t *testing.T) {
	codecs := []struct {
		name          string
		codec, result compression.Codec
	}{
		{"int8", compression.Int8{}, nil},
		{"topk", compression.TopK{Fraction: 0.01}, compression.Sparse{}},
	}
	for _, tc := range []struct{ n, g int }{{4, 2}, {8, 2}, {9, 3}, {16, 4}, {27, 3}, {6, 3}, {10, 3}} {
		for _, c := range codecs {
			t.Run(fmt.Sprintf("%d peers, groups of %d, %s", tc.n, tc.g, c.name), func(t *testing.T) {
				const n, at = 4096, 7
				ss, envs, avs, ids := setupMoshpit(t, tc.n, n, tc.g, c.codec, c.result)
				grid := allreduce.NewMoshpitGrid("t", ids, tc.g)
				want := int(math.Ceil(math.Log(float64(tc.n))/math.Log(float64(tc.g)) - 1e-9))
				if grid.Dims != want {
					t.Fatalf("grid of %d dimensions, ⌈log_g N⌉ = %d", grid.Dims, want)
				}
				run := func(step uint64, grads [][]float32) {
					outs, errs := stepAll(t, ss, envs, step, grads)
					for i := range ss {
						if errs[i] != nil {
							t.Fatalf("step %d member %d: %v", step, i, errs[i])
						}
						envs[i].params = slices.Clone(outs[i].Params)
					}
				}
				zero := make([][]float32, tc.n)
				for i := range zero {
					zero[i] = make([]float32, n)
				}
				// One cycle makes every group's reference (fp32 rounds).
				step := uint64(0)
				sent := sentBy(avs)
				for ; step < uint64(grid.Dims); step++ {
					run(step, zero)
				}
				fp32 := sentBy(avs) - sent
				for i := range ss {
					if len(ss[i].(*moshpit).refs) == 0 {
						t.Fatalf("member %d holds no reference after a cycle", i)
					}
				}
				// Peer 0 moves one value; count the rounds until all have it.
				kick := slices.Clone(zero)
				kick[0] = make([]float32, n)
				kick[0][at] = -1
				rounds := 0
				sent = sentBy(avs)
				for reached := false; !reached; rounds++ {
					if rounds > grid.Dims+1 {
						t.Fatalf("not every peer had the change after %d rounds", rounds)
					}
					if rounds == 0 {
						run(step, kick)
					} else {
						run(step, zero)
					}
					step++
					reached = !slices.ContainsFunc(envs, func(e *fakeEnv) bool { return e.params[at] == 0 })
				}
				// Bytes per round against the fp32 cycle's.
				if r := float64(sentBy(avs)-sent) / float64(rounds) / (float64(fp32) / float64(grid.Dims)); r > 0.3 {
					t.Fatalf("rounds of deltas sent %.2f of the fp32 rounds' bytes", r)
				}
				cells := 1
				for _, s := range grid.Sides {
					cells *= s
				}
				full := cells == tc.n
				if full && rounds > grid.Dims {
					t.Fatalf("full grid: %d rounds, want %d", rounds, grid.Dims)
				}
				t.Logf("N=%d g=%d %s: every peer had the change after %d rounds (⌈log_g N⌉ = %d)", tc.n, tc.g, c.name, rounds, grid.Dims)
			})
		}
	}
}
