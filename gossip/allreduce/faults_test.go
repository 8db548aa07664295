package allreduce

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

var faultReps = flag.Int("faults.reps", 2, "repetitions of every fault-matrix case (the acceptance run uses 20)")

// A fault is injected into exactly one member at one protocol step,
// identified by the frames that member sends.
type faultPhase string

const (
	phaseMatch     faultPhase = "match"     // the assembler, when announcing the group
	phaseSend      faultPhase = "send"      // a member, when sending its copy of a part
	phaseReceipt   faultPhase = "receipt"   // an owner, confirming the first part that reached it
	phaseReduce    faultPhase = "reduce"    // an owner, after reducing, before any result goes out
	phaseBroadcast faultPhase = "broadcast" // an owner, after its result reached one member
)

type faultCase struct {
	kind   gossip.FrameAction // Crash, Stall, Slow or Corrupt
	phase  faultPhase
	member int // index into the sorted member list; for phaseMatch the assembler is used
}

func (c faultCase) String() string {
	return fmt.Sprintf("%s/%s/member%d", faultNames[c.kind], c.phase, c.member)
}

var faultNames = map[gossip.FrameAction]string{gossip.Crash: "crash", gossip.Stall: "stall", gossip.Slow: "slow", gossip.Corrupt: "garbage"}

// hook returns the Fault function for c: it fires once, on the first frame
// of the chosen member that matches the phase, and sets fired then.
func (c faultCase) hook(victim peer.ID, fired *atomic.Bool) func(gossip.FrameEvent) gossip.FrameAction {
	var results atomic.Int32
	return func(ev gossip.FrameEvent) gossip.FrameAction {
		if ev.From != victim {
			return gossip.Deliver
		}
		if fired.Load() {
			if c.kind == gossip.Slow {
				return gossip.Slow // a slow link stays slow
			}
			return gossip.Deliver
		}
		hit := false
		switch c.phase {
		case phaseMatch:
			hit = ev.Proto == gossip.ProtoMatch && !ev.Opener
		case phaseSend:
			hit = ev.Proto == gossip.ProtoAllReduce && ev.Opener && ev.Seq == 1
		case phaseReceipt: // an owner's frames: the receipt, then the result
			hit = ev.Proto == gossip.ProtoAllReduce && !ev.Opener && ev.Seq == 0
		case phaseReduce:
			hit = ev.Proto == gossip.ProtoAllReduce && !ev.Opener && ev.Seq == 1
		case phaseBroadcast:
			hit = ev.Proto == gossip.ProtoAllReduce && !ev.Opener && ev.Seq == 1 && results.Add(1) == 2
		}
		if hit && fired.CompareAndSwap(false, true) {
			return c.kind
		}
		return gossip.Deliver
	}
}

type outcome struct {
	out []float32
	err error
}

// step runs matchmaking and the all-reduce for one step on the given
// members at once. It does not wait for the member at index skip (a
// stalled peer may hang until the test releases it); -1 waits for all.
func step(mms []*Matchmaker, avs []*Averager, idx []int, ids []peer.ID, step uint64, vecs [][]float32, samples []int, skip int) []outcome {
	res := make([]outcome, len(idx))
	var wg sync.WaitGroup
	for n, i := range idx {
		waited := i != skip
		if waited {
			wg.Add(1)
		}
		go func() {
			if waited {
				defer wg.Done()
			}
			ctx := context.Background()
			r, err := mms[i].Match(ctx, step, samples[i], ids)
			if err != nil {
				if waited {
					res[n].err = err
				}
				return
			}
			out := make([]float32, len(vecs[i]))
			err = avs[i].AllReduce(ctx, r, vecs[i], out)
			if !waited {
				return // nobody reads a skipped member's outcome
			}
			if err != nil {
				res[n].err = err
				return
			}
			res[n].out = out
		}()
	}
	wg.Wait()
	return res
}

// consistent checks the round invariant: all succeeded with bit-identical
// results, or all failed.
func consistent(res []outcome) error {
	ok := 0
	for _, r := range res {
		if r.err == nil {
			ok++
		}
	}
	if ok != 0 && ok != len(res) {
		var msg string
		for i, r := range res {
			msg += fmt.Sprintf("\n  peer %d: err=%v", i, r.err)
		}
		return fmt.Errorf("%d of %d succeeded: a half-applied round%s", ok, len(res), msg)
	}
	for i := 1; i < ok; i++ {
		for e := range res[0].out {
			if math.Float32bits(res[i].out[e]) != math.Float32bits(res[0].out[e]) {
				return fmt.Errorf("peer %d differs at %d", i, e)
			}
		}
	}
	return nil
}

// TestFaultMatrix injects every fault kind at every phase into every
// member of a 4-peer round. After the faulty round every healthy member is
// consistent (all applied the same bits, or all applied nothing); a retry
// among the healthy members then succeeds with the exact weighted mean of
// their vectors. It logs the slowest recovery per fault kind.
//
//	go test -run TestFaultMatrix -v ./gossip/allreduce/ -args -faults.reps=20
func TestFaultMatrix(t *testing.T) {
	const k = 4
	var cases []faultCase
	for _, kind := range []gossip.FrameAction{gossip.Crash, gossip.Stall, gossip.Slow, gossip.Corrupt} {
		for _, ph := range []faultPhase{phaseMatch, phaseSend, phaseReceipt, phaseReduce, phaseBroadcast} {
			for m := 0; m < k; m++ {
				if ph == phaseMatch && m > 0 {
					continue // the assembler is one member
				}
				cases = append(cases, faultCase{kind: kind, phase: ph, member: m})
			}
		}
	}
	var mu sync.Mutex
	slowest := map[gossip.FrameAction]time.Duration{}
	for _, c := range cases {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			for rep := 0; rep < *faultReps; rep++ {
				// In a bubble, time is fake and moves only when every
				// goroutine waits: the timeouts are measured against the
				// protocol's own steps, not against a loaded machine.
				synctest.Test(t, func(t *testing.T) {
					d := runFaultCase(t, c, k, uint64(rep))
					mu.Lock()
					slowest[c.kind] = max(slowest[c.kind], d)
					mu.Unlock()
					// Let the goroutines left behind (a stalled member, owners
					// waiting out their deadlines) run out their timers.
					time.Sleep(time.Minute)
				})
			}
		})
	}
	t.Cleanup(func() {
		for kind, name := range faultNames {
			t.Logf("slowest recovery after %s: %v (bubble time: protocol timers only)", name, slowest[kind])
		}
	})
}

func runFaultCase(t *testing.T, c faultCase, k int, seed uint64) time.Duration {
	net, ts, ids := memPeers(k)
	defer net.Release()
	net.Timeout = 150 * time.Millisecond
	// Under the frame timeout, so frames do arrive; a few in a row exceed
	// the round deadline, so a slow member can cost the round but must not
	// hold it hostage or split it.
	net.SlowDelay = 120 * time.Millisecond
	view := &fixedView{ids: ids}
	mms := make([]*Matchmaker, k)
	avs := make([]*Averager, k)
	for i, tr := range ts {
		mms[i] = NewMatchmaker(tr, MatchConfig{Run: "ab", JoinWindow: 100 * time.Millisecond, Slack: 300 * time.Millisecond}, view)
		avs[i] = NewAverager(tr, AveragerConfig{Codec: codec(t, "fp16"), RoundTimeout: 600 * time.Millisecond})
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	victim := sorted[c.member]
	if c.phase == phaseMatch {
		victim = Assembler(0, ids)
	}
	var fired atomic.Bool
	net.SetFault(c.hook(victim, &fired))

	rng := rand.New(rand.NewPCG(seed, 77))
	vecs := make([][]float32, k)
	samples := make([]int, k)
	for i := range vecs {
		vecs[i] = randVec(rng, 257)
		samples[i] = 1 + rng.IntN(9)
	}
	all := []int{0, 1, 2, 3}
	start := time.Now()
	victimIdx := -1
	for i, id := range ids {
		if id == victim {
			victimIdx = i
		}
	}
	first := step(mms, avs, all, ids, 0, vecs, samples, victimIdx)
	if !fired.Load() {
		t.Fatalf("rep %d: the fault never fired, so this case tested nothing", seed)
	}

	// Healthy members must agree on the faulty round.
	var healthy []int
	var healthyIDs []peer.ID
	var healthyRes []outcome
	for i, id := range ids {
		if id == victim {
			continue
		}
		healthy = append(healthy, i)
		healthyIDs = append(healthyIDs, id)
		healthyRes = append(healthyRes, first[i])
	}
	if err := consistent(healthyRes); err != nil {
		t.Fatalf("rep %d, after the fault: %v", seed, err)
	}
	t.Logf("%s rep %d: healthy members after the fault: ok=%v", c, seed, healthyRes[0].err == nil)
	if healthyRes[0].err == nil {
		// The fault came too late to matter (e.g. garbage the codec
		// rejected and repaired): the round must still be the exact mean.
		checkMean(t, healthyRes[0].out, vecs, samples, all)
		return time.Since(start)
	}

	// Retry among the healthy members only, as their membership view
	// would after the victim's heartbeats stop.
	net.SetFault(nil)
	net.Isolate(victim)
	view.mu.Lock()
	view.ids = healthyIDs
	view.mu.Unlock()
	retry := step(mms, avs, healthy, healthyIDs, 0, vecs, samples, -1)
	if err := consistent(retry); err != nil {
		t.Fatalf("rep %d, retry: %v", seed, err)
	}
	if retry[0].err != nil {
		t.Fatalf("rep %d, retry among healthy members failed: %v", seed, retry[0].err)
	}
	checkMean(t, retry[0].out, vecs, samples, healthy)
	return time.Since(start)
}

// checkMean compares out with the fp16-rounded weighted mean of the given members.
func checkMean(t *testing.T, out []float32, vecs [][]float32, samples []int, members []int) {
	t.Helper()
	var total float64
	for _, i := range members {
		total += float64(samples[i])
	}
	for e := range out {
		var want float64
		for _, i := range members {
			want += float64(samples[i]) * float64(vecs[i][e])
		}
		want /= total
		if math.Abs(float64(out[e])-want) > 2e-3*(1+math.Abs(want)) {
			t.Fatalf("element %d: %v, want the mean of members %v: %v", e, out[e], members, want)
		}
	}
}
