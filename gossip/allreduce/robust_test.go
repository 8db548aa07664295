package allreduce

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/trainer"
)

// A liar among 6 members, one per case, speaking the protocol by hand:
// its part copies hold what it wants, and the assembler announced what
// it claimed. It owns no part (a lying owner is another defence).
type liar struct {
	name    string
	samples int                         // its claim, as the round announces it
	values  func(h []float32) []float32 // its copy, from the honest mean of the part
	special uint32                      // instead: every value these float32 bits (NaN, +Inf)
}

var liars = []liar{
	{name: "scaled 1e30", samples: 64, values: func(h []float32) []float32 { return scaleVec(h, 1e30) }},
	{name: "sign-flipped x10", samples: 64, values: func(h []float32) []float32 { return scaleVec(h, -10) }},
	{name: "noise", samples: 64, values: func(h []float32) []float32 {
		rng := rand.New(rand.NewPCG(5, uint64(len(h))))
		out := make([]float32, len(h))
		for i := range out {
			out[i] = float32(1e3 * rng.NormFloat64())
		}
		return out
	}},
	{name: "claims 2^30 samples", samples: 1 << 30, values: func(h []float32) []float32 {
		out := make([]float32, len(h))
		for i := range out {
			out[i] = -1
		}
		return out
	}},
	{name: "NaN", samples: 64, special: 0x7fc00000},
	{name: "+Inf", samples: 64, special: 0x7f800000},
}

func scaleVec(x []float32, f float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = f * v
	}
	return out
}

// robustRun is one round with the liar: the honest members' outputs, the
// honest members' (capped) weighted mean, and who was dropped.
type robustRun struct {
	outs    [][]float32 // by honest member
	honest  [][]float32 // their inputs
	weights []int       // capped, all 6 members
	dropped []peer.ID
	r       Round
}

const (
	robustN          = 600
	robustMaxSamples = 256 // the run's target batch
)

func runWithLiar(t *testing.T, rule Aggregate, l liar) robustRun {
	t.Helper()
	const k = 6
	_, ts, ids := memPeers(k)
	var mu sync.Mutex
	var run robustRun
	var avs []*Averager
	for _, tr := range ts[:k-1] {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: 5 * time.Second,
			MaxSamples: robustMaxSamples, Aggregate: rule,
			OnDrop: func(_ string, p peer.ID, _ error) { mu.Lock(); run.dropped = append(run.dropped, p); mu.Unlock() }}))
	}
	// Honest gradients: a shared direction plus minibatch noise, with
	// different batches.
	rng := rand.New(rand.NewPCG(3, 3))
	g := make([]float32, robustN)
	for e := range g {
		g[e] = float32(0.05 * rng.NormFloat64())
	}
	samples := []int{64, 32, 96, 64, 48, l.samples}
	for range k - 1 {
		x := make([]float32, robustN)
		for e := range x {
			x[e] = g[e] + float32(0.02*rng.NormFloat64())
		}
		run.honest = append(run.honest, x)
	}
	shares := []int{1, 1, 1, 1, 1, 0}
	r := Round{Step: 1, Members: ids, Samples: samples, Shares: shares, ID: RoundID("robust", 1, 0, ids, samples, shares)}
	run.r = r
	run.weights = cappedWeights(samples, robustMaxSamples)
	hmean := honestMean(run.honest, run.weights)

	var wg sync.WaitGroup
	for j := range k - 1 {
		wg.Go(func() {
			lo, hi := r.Bounds(robustN, j)
			var frame []byte
			if l.values != nil {
				var err error
				if frame, err = compression.EncodePart(nil, compression.FP32{}, compression.LosslessNone, l.values(hmean[lo:hi])); err != nil {
					t.Error(err)
					return
				}
			} else {
				frame = specialFrame(hi-lo, l.special)
			}
			s, err := ts[k-1].Open(context.Background(), ids[j], gossip.ProtoAllReduce)
			if err != nil {
				t.Error(err)
				return
			}
			hdr, _ := json.Marshal(partHeader{Round: r.ID, Sender: k - 1, Part: j, Samples: l.samples})
			s.Send(hdr)
			s.Send(frame)
			s.Recv(1 << 20)
			s.Recv(1 << 20)
			s.Close()
		})
	}
	outs, errs := runRound(t, avs, r, run.honest)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s, %s: honest member %d: round failed: %v", rule, l.name, i, err)
		}
	}
	for i := 1; i < len(outs); i++ {
		for e := range outs[0] {
			if math.Float32bits(outs[i][e]) != math.Float32bits(outs[0][e]) {
				t.Fatalf("%s, %s: member %d differs from member 0 at %d: %v vs %v", rule, l.name, i, e, outs[i][e], outs[0][e])
			}
		}
	}
	run.outs = outs
	return run
}

// specialFrame is a well-formed fp32 part of n values, every one with the
// float32 bits b.
func specialFrame(n int, b uint32) []byte {
	f := []byte{compression.Version, byte(compression.IDFP32), byte(compression.LosslessNone), 0}
	f = binary.LittleEndian.AppendUint32(f, uint32(n))
	f = binary.LittleEndian.AppendUint32(f, uint32(4*n))
	for range n {
		f = binary.LittleEndian.AppendUint32(f, b)
	}
	return binary.LittleEndian.AppendUint32(f, crc32.Checksum(f, crc32.MakeTable(crc32.Castagnoli)))
}

// honestMean is the float64 weighted mean of the honest members' vectors.
func honestMean(xs [][]float32, weights []int) []float32 {
	out := make([]float32, len(xs[0]))
	var total float64
	for m := range xs {
		total += float64(weights[m])
	}
	for e := range out {
		var s float64
		for m, x := range xs {
			s += float64(weights[m]) * float64(x[e])
		}
		out[e] = float32(s / total)
	}
	return out
}

func norm(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

func dist(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// The acceptance: with clip or trimmed, one liar of any kind
// fails no round, every honest member gets the same bits, the result lies
// within the rule's bound of the honest members' weighted mean (far
// closer than the plain mean gets), and an Adam step on it keeps the
// optimizer state and the parameters finite.
func TestRobustAggregationBoundsOneLiar(t *testing.T) {
	for _, rule := range []Aggregate{AggregateClip, AggregateTrimmed} {
		for _, l := range liars {
			t.Run(rule.String()+"/"+l.name, func(t *testing.T) {
				run := runWithLiar(t, rule, l)
				got := run.outs[0]
				h := honestMean(run.honest, run.weights)
				dropped := l.values == nil
				if dropped {
					if len(run.dropped) != len(run.honest) {
						t.Errorf("drops reported: %v, want the liar at each of the %d owners", run.dropped, len(run.honest))
					}
					for _, p := range run.dropped {
						if p != run.r.Members[5] {
							t.Errorf("dropped %s, not the liar", p)
						}
					}
				}
				dev := dist(got, h)
				switch rule {
				case AggregateClip:
					checkClipBound(t, run, got, h, dropped)
				case AggregateTrimmed:
					checkTrimmedBound(t, run, got)
				}
				if !dropped {
					// The bound bites: the plain mean is moved far more.
					mean := runWithLiar(t, AggregateMean, l).outs[0]
					meanDev := dist(mean, h)
					t.Logf("deviation from the honest mean: %s %.3g, mean %.3g (honest mean's norm %.3g)", rule, dev, meanDev, norm(h))
					if !(meanDev > 3*dev) {
						t.Errorf("%s moved the result by %.3g, mean by %.3g: want mean > 3x", rule, dev, meanDev)
					}
				}
				checkAdamStaysFinite(t, got)
			})
		}
	}
}

// checkClipBound: per part, with weight share s of the liar (0 when it
// was dropped), τ ≤ ClipFactor × the largest honest norm (the lower
// median of 6 norms with one liar is an honest one or below), and no
// honest copy clipped (checked: honest norms within ClipFactor of each
// other), ‖result − h‖ ≤ s·(τ + ‖h‖), plus float32 rounding.
func checkClipBound(t *testing.T, run robustRun, got, h []float32, dropped bool) {
	t.Helper()
	var total float64
	for _, w := range run.weights {
		total += float64(w)
	}
	share := float64(run.weights[5]) / total
	if dropped {
		share = 0
	}
	for j := range len(run.honest) {
		lo, hi := run.r.Bounds(robustN, j)
		minN, maxN := math.Inf(1), 0.0
		for _, x := range run.honest {
			minN, maxN = min(minN, norm(x[lo:hi])), max(maxN, norm(x[lo:hi]))
		}
		if maxN > ClipFactor*minN {
			t.Fatalf("part %d: honest norms %.3g..%.3g: the test's honest copies would be clipped", j, minN, maxN)
		}
		tau := ClipFactor * maxN
		bound := share*(tau+norm(h[lo:hi])) + 1e-5*norm(h[lo:hi])
		if d := dist(got[lo:hi], h[lo:hi]); !(d <= bound) {
			t.Errorf("part %d: result %.4g from the honest mean, bound %.4g (liar's share %.3f, τ ≤ %.3g)", j, d, bound, share, tau)
		}
	}
}

// checkTrimmedBound: with one liar and TrimCount(6) = 1, every value of
// the result lies within the honest members' values of it.
func checkTrimmedBound(t *testing.T, run robustRun, got []float32) {
	t.Helper()
	if TrimCount(6) < 1 {
		t.Fatal("6 members trim nothing")
	}
	for e := range got {
		lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
		for _, x := range run.honest {
			lo, hi = min(lo, x[e]), max(hi, x[e])
		}
		slack := 1e-6 * (math.Abs(float64(lo)) + math.Abs(float64(hi)))
		if !(float64(got[e]) >= float64(lo)-slack && float64(got[e]) <= float64(hi)+slack) {
			t.Fatalf("value %d: %v outside the honest range [%v, %v]", e, got[e], lo, hi)
		}
	}
}

// checkAdamStaysFinite takes one Adam step on the averaged gradient.
func checkAdamStaysFinite(t *testing.T, grad []float32) {
	t.Helper()
	opt, err := trainer.NewOptimizer("adam", 0, 0, len(grad))
	if err != nil {
		t.Fatal(err)
	}
	params := make([]float32, len(grad))
	for i := range params {
		params[i] = 0.1
	}
	opt.Step(params, grad, 1e-3)
	if i := opt.FirstNonFinite(); i >= 0 {
		t.Errorf("Adam's state is not finite at %d", i)
	}
	if i := compression.FirstNonFinite(params); i >= 0 {
		t.Errorf("parameter %d is %v after the step", i, params[i])
	}
}

// A round that gives a member no samples, or fewer, is refused before
// anything is sent: a negative weight would cancel the others'.
func TestAllReduceRefusesNonPositiveSamples(t *testing.T) {
	_, ts, ids := memPeers(2)
	av := NewAverager(ts[0], AveragerConfig{Codec: codec(t, "fp32")})
	for _, s := range []int{0, -1 << 30} {
		r := Round{ID: fmt.Sprint(s), Members: ids, Samples: []int{1, s}}
		err := av.AllReduce(context.Background(), r, make([]float32, 4), make([]float32, 4))
		if want := fmt.Sprintf("member 1 %d samples, want > 0", s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("samples %d: %v, want an error naming member 1", s, err)
		}
	}
}
