package averaging

import (
	"context"
	"errors"
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

// setupDiLoCo is setup for DiLoCo strategies, rounds bounded by timeout.
func setupDiLoCo(t *testing.T, k, n int, codec compression.Codec, overlap bool, timeout time.Duration) ([]Strategy, []*fakeEnv, []peer.ID) {
	t.Helper()
	_, ts, ids := memPeers(k)
	slices.SortFunc(ts, func(a, b *gossip.MemTransport) int { return strings.Compare(string(a.Self()), string(b.Self())) })
	slices.Sort(ids)
	var ss []Strategy
	var envs []*fakeEnv
	for i, tr := range ts {
		av := allreduce.NewAverager(tr, allreduce.AveragerConfig{Codec: codec, RoundTimeout: timeout, MaxSamples: 1 << 20})
		s, err := New(Config{Averager: av, NumParams: n, Codec: codec, DiLoCo: true, Overlap: overlap})
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
		envs = append(envs, &fakeEnv{view: swarm.View{Run: "t", Self: ids[i], Live: live(ids, ids[i], 0)}, params: make([]float32, n)})
	}
	return ss, envs, ids
}

// stepSamples runs one Step at every member at once, each with its own
// samples (which the fake matchmaker then puts in the round).
func stepSamples(ss []Strategy, envs []*fakeEnv, step uint64, deltas [][]float32, samples []int) ([]Outcome, []error) {
	return stepRound(ss, envs, step, deltas, samples, samples)
}

// stepRound is stepSamples where the round launched claims round
// samples (a failed round's samples are sent again with the phase's).
func stepRound(ss []Strategy, envs []*fakeEnv, step uint64, deltas [][]float32, samples, round []int) ([]Outcome, []error) {
	landed(ss) // the fake env is the test's again
	for _, e := range envs {
		e.samples = round
	}
	outs := make([]Outcome, len(ss))
	errs := make([]error, len(ss))
	done := make(chan struct{})
	for i := range ss {
		go func() {
			defer func() { done <- struct{}{} }()
			outs[i], errs[i] = ss[i].Step(context.Background(), envs[i], step, deltas[i], samples[i])
		}()
	}
	for range ss {
		<-done
	}
	return outs, errs
}

// A phase: the pseudo-gradients are averaged weighted by the samples each
// peer saw (a slow peer that took fewer inner steps weighs less), and
// under int8 with error feedback every member still gets the same bits.
func TestDiLoCoWeighsPhasesBySamples(t *testing.T) {
	const k, n = 3, 700
	rng := rand.New(rand.NewPCG(7, 8))
	deltas := [][]float32{randVec(rng, n), randVec(rng, n), randVec(rng, n)}
	samples := []int{64, 128, 320}
	for _, codec := range []compression.Codec{compression.FP32{}, compression.Int8{}} {
		ss, envs, ids := setupDiLoCo(t, k, n, codec, false, 5*time.Second)
		outs, errs := stepSamples(ss, envs, 4, deltas, samples)
		want := allreduce.WeightedMean(deltas, samples)
		for i, o := range outs {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if o.Next != 5 || o.Carry != nil || !slices.Equal(o.Members, ids) || !slices.Equal(o.Grad, outs[0].Grad) {
				t.Fatalf("%s, member %d: next %d, carry %v, members %v, same as member 0 %v", codec.Name(), i, o.Next, o.Carry != nil, o.Members, slices.Equal(o.Grad, outs[0].Grad))
			}
		}
		if codec.ID() == compression.IDFP32 && !slices.Equal(outs[0].Grad, want) {
			t.Fatal("fp32: not the sample-weighted mean of the pseudo-gradients")
		}
		if d := maxDiff(outs[0].Grad, want); codec.ID() != compression.IDFP32 && (d == 0 || d > 0.05) {
			t.Fatalf("%s: off the weighted mean by %g", codec.Name(), d)
		}
	}
}

// Overlap: a phase's round runs while the next phase computes; the next
// Step collects it (its outer step, one phase late) and launches the new
// phase's progress alone, handing it back as Carry; Flush collects the
// last.
func TestDiLoCoOverlapAppliesOnePhaseLate(t *testing.T) {
	const k, n = 2, 300
	ss, envs, _ := setupDiLoCo(t, k, n, compression.FP32{}, true, 5*time.Second)
	rng := rand.New(rand.NewPCG(1, 1))
	d0 := [][]float32{randVec(rng, n), randVec(rng, n)}
	outs, errs := stepSamples(ss, envs, 0, d0, []int{10, 30})
	for i, o := range outs {
		if errs[i] != nil || o.Grad != nil || o.Next != 0 || !slices.Equal(o.Carry, d0[i]) || !ss[i].(Flusher).InFlight() {
			t.Fatalf("member %d, first phase: %v, %+v", i, errs[i], o)
		}
	}
	// The second phase ends with everything not in the state: both.
	d1 := [][]float32{randVec(rng, n), randVec(rng, n)}
	total := make([][]float32, k)
	for i := range k {
		total[i] = make([]float32, n)
		for j := range n {
			total[i][j] = d0[i][j] + d1[i][j]
		}
	}
	outs, errs = stepSamples(ss, envs, 0, total, []int{20, 20})
	want := allreduce.WeightedMean(d0, []int{10, 30})
	var fresh [][]float32
	for i, o := range outs {
		if errs[i] != nil || o.Next != 1 || !slices.Equal(o.Grad, want) {
			t.Fatalf("member %d, second phase: %v, next %d, first phase's mean %v", i, errs[i], o.Next, slices.Equal(o.Grad, want))
		}
		if d := maxDiff(o.Carry, d1[i]); d > 1e-5 {
			t.Fatalf("member %d carries %g off its second phase", i, d)
		}
		fresh = append(fresh, slices.Clone(o.Carry))
	}
	for i := range k {
		o, err := ss[i].(Flusher).Flush(context.Background(), envs[i], 1)
		if err != nil || o.Next != 2 || o.Carry != nil || ss[i].(Flusher).InFlight() || !slices.Equal(o.Grad, allreduce.WeightedMean(fresh, []int{20, 20})) {
			t.Fatalf("member %d, flush: %v, %+v", i, err, o)
		}
	}
}

// A peer dies in the middle of a phase: the round in flight fails for
// the others, nothing is applied, and their next Step sends all their
// progress again, with all its samples, among whoever is left. Only the
// dead peer's phase is lost.
func TestDiLoCoOverlapPeerDiesMidPhase(t *testing.T) {
	const k, n = 3, 200
	ss, envs, ids := setupDiLoCo(t, k, n, compression.Int8{}, true, time.Second)
	rng := rand.New(rand.NewPCG(2, 2))
	d0 := [][]float32{randVec(rng, n), randVec(rng, n), randVec(rng, n)}
	// Peer 2 is gone before its phase ends: the others' round waits for
	// it (it is in their view) and fails.
	outs, errs := stepSamples(ss[:2], envs[:2], 0, d0[:2], []int{8, 8})
	landed(ss)
	for i := range 2 {
		if errs[i] != nil || outs[i].Carry == nil {
			t.Fatalf("member %d: %v, %+v", i, errs[i], outs[i])
		}
		envs[i].view.Live = live(ids[:2], ids[i], 0) // it expires from the view
	}
	outs, errs = stepRound(ss[:2], envs[:2], 0, d0[:2], []int{8, 8}, []int{16, 16})
	for i := range 2 {
		var re *RoundError
		if !errors.As(errs[i], &re) || outs[i].Grad != nil || outs[i].Next != 0 || !slices.Equal(outs[i].Carry, d0[i]) {
			t.Fatalf("member %d after the failed round: %v, %+v", i, errs[i], outs[i])
		}
	}
	landed(ss)
	for i := range 2 {
		if envs[i].claimed != 16 {
			t.Fatalf("member %d sent its progress again claiming %d samples, want both phases' 16", i, envs[i].claimed)
		}
	}
	got := make([][]float32, 2)
	for i := range 2 {
		o, err := ss[i].(Flusher).Flush(context.Background(), envs[i], 0)
		if err != nil || o.Next != 1 {
			t.Fatalf("member %d, flush: %v, %+v", i, err, o)
		}
		got[i] = o.Grad
	}
	if !slices.Equal(got[0], got[1]) || maxDiff(got[0], allreduce.WeightedMean(d0[:2], []int{16, 16})) > 0.05 {
		t.Fatal("the two that are left did not average all their progress alike")
	}
}

// Reset drops the round in flight without waiting (the node holds its
// lock, which matchmaking takes); the next Step waits for it, then
// launches afresh.
func TestDiLoCoOverlapReset(t *testing.T) {
	const n = 50
	ss, envs, _ := setupDiLoCo(t, 2, n, compression.Int8{}, true, time.Second)
	d := [][]float32{slices.Repeat([]float32{1}, n), slices.Repeat([]float32{3}, n)}
	stepSamples(ss, envs, 0, d, []int{1, 1})
	for _, s := range ss {
		s.Reset()
		if s.(Flusher).InFlight() {
			t.Fatal("a round still in flight after Reset")
		}
	}
	outs, errs := stepSamples(ss, envs, 3, d, []int{1, 1})
	for i, o := range outs {
		if errs[i] != nil || o.Grad != nil || o.Next != 3 || !slices.Equal(o.Carry, d[i]) {
			t.Fatalf("member %d after Reset: %v, %+v", i, errs[i], o)
		}
	}
	if _, err := ss[0].Step(context.Background(), envs[0], 3, d[0][:n-1], 1); err == nil {
		t.Error("a pseudo-gradient of the wrong length was taken")
	}
}

// landed waits for the rounds in flight to end, uncollected.
func landed(ss []Strategy) {
	for _, s := range ss {
		if d, ok := s.(*diloco); ok {
			for _, f := range []*flight{d.pending, d.abandoned} {
				if f != nil {
					<-f.done
				}
			}
		}
	}
}

func maxDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, float64(abs32(a[i]-b[i])))
	}
	return m
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
