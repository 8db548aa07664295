package allreduce

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/gossiptest"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

func codec(t testing.TB, name string) compression.Codec {
	t.Helper()
	c, err := compression.ByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
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
				testBitIdenticalWeightedMean(t, name, k, 1001) // not divisible by k: parts differ in size
			})
		}
	}
	// Parts of several chunks, the last one short: chunks move, are
	// averaged and come back while others are still on the way.
	for _, name := range []string{"fp32", "int8"} {
		t.Run(name+"/3/chunks", func(t *testing.T) { testBitIdenticalWeightedMean(t, name, 3, 7*chunkValues+1001) })
	}
}

func testBitIdenticalWeightedMean(t *testing.T, name string, k, n int) {
	{
		_, ts, ids := memPeers(k)
		var avs []*Averager
		for _, tr := range ts {
			avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, name), RoundTimeout: 5 * time.Second}))
		}
		rng := rand.New(rand.NewPCG(1, uint64(k)))
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
		switch name {
		case "fp16":
			tol = 2e-3
		case "int8":
			tol = 3e-2
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
// are pending). It runs in a synctest bubble: time moves only when every
// goroutine waits, so a loaded machine cannot time a round out.
func TestAllReduceManyRounds(t *testing.T) {
	synctest.Test(t, testAllReduceManyRounds)
}

func testAllReduceManyRounds(t *testing.T) {
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

// A member that never runs the round (alive, it accepts streams, but its
// AllReduce never starts) costs the others the round's budget and no
// more: at three quarters of it they stop waiting for its part, find
// nobody who has it, and the round fails for everyone. The budget is an
// hour on a mock clock; the test advances the clock instead of waiting.
func TestAllReduceSilentMemberFailsByDeadline(t *testing.T) {
	net, ts, ids := memPeers(3)
	mock := clock.NewMock()
	net.Clock, net.Timeout = mock, 2*time.Hour // only the round's budget bounds its frames
	var avs []*Averager
	for _, tr := range ts {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: time.Hour, Clock: mock}))
	}
	rng := rand.New(rand.NewPCG(4, 4))
	samples := []int{1, 1, 1}
	r := Round{Step: 1, Members: ids, Samples: samples, ID: RoundID("ab", 1, 0, ids, samples, nil)}
	vecs := [][]float32{randVec(rng, 300), randVec(rng, 300)}
	start := mock.Now()
	errs := make([]error, 2)
	ends := make([]time.Time, 2)
	var wg sync.WaitGroup
	for i := range 2 { // member 2 stays silent
		wg.Go(func() {
			errs[i] = avs[i].AllReduce(context.Background(), r, vecs[i], make([]float32, 300))
			ends[i] = mock.Now()
		})
	}
	// Both started and hold each other's part: all that is left is to
	// wait for member 2.
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		for i := range 2 {
			avs[i].mu.Lock()
			rs := avs[i].rounds.rounds[r.ID]
			var missing []peer.ID
			if rs != nil {
				missing = rs.missingMembers()
			}
			avs[i].mu.Unlock()
			if rs == nil || !rs.started || len(missing) != 1 || missing[0] != ids[2] {
				return fmt.Errorf("member %d is not waiting for member 2 alone", i)
			}
		}
		return nil
	})
	budget := avs[0].Deadline()
	if budget != time.Hour {
		t.Fatalf("budget %v, want the RoundTimeout of a first round", budget)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := budget / 64
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			mock.Add(tick) // goroutines that set timers late still see them fire on a later tick
			runtime.Gosched()
		}
	}
	for i, err := range errs {
		if err == nil {
			t.Fatalf("member %d: a round with a silent member succeeded", i)
		}
		if el := ends[i].Sub(start); el < budget*3/4 || el > budget+tick {
			t.Fatalf("member %d failed after %v of a %v budget: want between 3/4 of it and all of it (%v)", i, el, budget, err)
		}
		t.Logf("member %d failed after %v of %v: %v", i, ends[i].Sub(start), budget, err)
	}
}

var (
	memPeers = gossiptest.MemPeers
	randVec  = gossiptest.RandVec
)

// A member claiming 2^30 samples would dictate the weighted mean; owners
// cap every member's weight at MaxSamples, alike, so the members still
// agree bit for bit and the claim weighs no more than the cap.
func TestOwnersCapClaimedSamples(t *testing.T) {
	for _, tc := range []struct {
		limit int
		want  float32 // the mean of 0.01, 0.01 (64 samples each) and -1
	}{
		{0, float32((0.01*64*2 - 1<<30) / (64*2 + 1<<30))},
		{256, float32((0.01*64*2 - 256) / (64*2 + 256))},
	} {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			_, ts, ids := memPeers(3)
			var avs []*Averager
			for _, tr := range ts {
				avs = append(avs, NewAverager(tr, AveragerConfig{RoundTimeout: 5 * time.Second, MaxSamples: tc.limit}))
			}
			samples := []int{64, 64, 1 << 30}
			r := Round{Step: 1, Members: ids, Samples: samples, ID: RoundID("cap", 1, 0, ids, samples, nil)}
			const n = 300
			vecs := [][]float32{slices.Repeat([]float32{0.01}, n), slices.Repeat([]float32{0.01}, n), slices.Repeat([]float32{-1}, n)}
			outs, errs := runRound(t, avs, r, vecs)
			for i := range outs {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				if !slices.Equal(outs[i], outs[0]) {
					t.Fatal("members disagree")
				}
			}
			if got := outs[0][0]; math.Abs(float64(got-tc.want)) > 1e-5 {
				t.Fatalf("mean %v, want %v", got, tc.want)
			}
		})
	}
}

// An owner whose last chunk of the average never reaches one member: the
// member repairs the whole part, chunk by chunk, from a member that got
// it, and all end bit-identical.
func TestRepairOfChunkedPart(t *testing.T) {
	net, ts, ids := memPeers(3)
	var avs []*Averager
	for _, tr := range ts {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: 6 * time.Second,
			MinRoundTimeout: 2 * time.Second, MinLinkRate: 1e9}))
	}
	const n = 3 * (2*chunkValues + 5) // parts of three chunks
	var dropped atomic.Bool
	net.SetFault(func(ev gossip.FrameEvent) gossip.FrameAction {
		// The owner's frames to a sender: receipt, then chunks 0, 1, 2.
		if ev.From == ids[0] && ev.To == ids[1] && ev.Proto == gossip.ProtoAllReduce && !ev.Opener && ev.Seq == 3 {
			dropped.Store(true)
			return gossip.Drop
		}
		return gossip.Deliver
	})
	rng := rand.New(rand.NewPCG(3, 3))
	vecs := [][]float32{randVec(rng, n), randVec(rng, n), randVec(rng, n)}
	samples := []int{1, 2, 3}
	r := Round{Members: ids, Samples: samples, ID: RoundID("ab", 0, 0, ids, samples, nil)}
	outs, errs := runRound(t, avs, r, vecs)
	if !dropped.Load() {
		t.Fatal("the fault never fired: the part was not sent in chunks")
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
	}
	for i := 1; i < len(outs); i++ {
		for e := range outs[0] {
			if math.Float32bits(outs[i][e]) != math.Float32bits(outs[0][e]) {
				t.Fatalf("peer %d differs at %d", i, e)
			}
		}
	}
}
