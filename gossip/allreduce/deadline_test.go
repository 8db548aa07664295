package allreduce

import (
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// The budget table: before any round the cap; after fast rounds the
// floor or what the bytes need, whichever is more; history when rounds
// were slower than the links predict; failures double it up to the cap.
func TestRoundBudget(t *testing.T) {
	base := roundBudget{open: 2 * time.Second, slack: 3, factor: 5, floor: time.Second, capFloor: 15 * time.Second}
	with := func(f func(*roundBudget)) roundBudget { b := base; f(&b); return b }
	for _, c := range []struct {
		name string
		b    roundBudget
		want time.Duration
	}{
		{"no round yet: the cap", base, 15 * time.Second},
		{"fast rounds, tiny parts: open + floor of the need", with(func(b *roundBudget) { b.recent = 10 * time.Millisecond }), 2 * time.Second},
		{"the bytes need more than history says", with(func(b *roundBudget) { b.recent = 100 * time.Millisecond; b.transfer = 2 * time.Second }), 8 * time.Second},
		{"history says more than the bytes", with(func(b *roundBudget) { b.recent = 2 * time.Second; b.transfer = 100 * time.Millisecond }), 10 * time.Second},
		{"one failure doubles", with(func(b *roundBudget) { b.recent = 10 * time.Millisecond; b.failures = 1 }), 4 * time.Second},
		{"three failures: 8x", with(func(b *roundBudget) { b.recent = 10 * time.Millisecond; b.failures = 3 }), 15 * time.Second},
		{"the cap grows with the bytes", with(func(b *roundBudget) { b.transfer = time.Minute }), 4 * (2*time.Second + 3*time.Minute)},
		{"backoff stops at the cap", with(func(b *roundBudget) { b.recent = time.Second; b.transfer = time.Minute; b.failures = 60 }), 4 * (2*time.Second + 3*time.Minute)},
		{"no overflow: saturates, stays positive", with(func(b *roundBudget) { b.recent = time.Second; b.transfer = maxDuration; b.failures = 1000 }), maxDuration},
	} {
		if got := c.b.deadline(); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// Opening a stream has its own budget, doubled with failures while
	// it is under half the round's (the rest is for moving the parts).
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{0, 2 * time.Second}, {1, 2 * time.Second}, {2, 4 * time.Second}, {10, 8 * time.Second}} {
		b := with(func(b *roundBudget) { b.recent = 10 * time.Millisecond; b.failures = c.failures })
		if got := b.openTimeout(); got != c.want {
			t.Errorf("opening after %d failures: %v, want %v", c.failures, got, c.want)
		}
	}
}

// A deadline learned from small groups cannot lock a larger group out:
// rounds that need more than the deadline fail, each failure doubles it,
// and within a few rounds one succeeds. (The old rule learned only from
// successes and kept the short deadline for good.)
func TestDeadlineCannotLockOut(t *testing.T) {
	b := roundBudget{open: 500 * time.Millisecond, slack: 3, factor: 5, floor: 1500 * time.Millisecond, capFloor: 15 * time.Second}
	b.recent = 300 * time.Millisecond // learned while the group was small
	needs := 9 * time.Second          // what rounds take now, past 5 x recent
	failed := 0
	for b.deadline() < needs {
		b.failures++
		failed++
		if failed > 10 {
			t.Fatalf("still failing after %d rounds: deadline %v, rounds need %v", failed, b.deadline(), needs)
		}
	}
	if failed > 3 {
		t.Errorf("%d failed rounds before the deadline covered %v", failed, needs)
	}
}

// The slowest member's bytes at its rate: member i sends its copies of
// the others' parts and its average to each other member.
func TestTransferTime(t *testing.T) {
	ids := []peer.ID{testutil.PeerID(0), testutil.PeerID(1), testutil.PeerID(2), testutil.PeerID(3)}
	const n = 1000 // values, 4 bytes each on the wire below
	fp32 := func(lo, hi int) (int, int) { return 4 * (hi - lo), 4 * (hi - lo) }
	even := Round{Members: ids}
	// Each member: 3 parts of 1000 B out, 3 averages of its 1000 B out.
	if got := TransferTime(even, n, 1000, fp32); got != 6*time.Second {
		t.Errorf("even split, unmeasured at 1000 B/s: %v, want 6s", got)
	}
	measured := Round{Members: ids, Rates: []float64{6000, 6000, 3000, 6000}}
	if got := TransferTime(measured, n, 1, fp32); got != 2*time.Second {
		t.Errorf("one member at half rate: %v, want its 2s", got)
	}
	// Rates under the floor (a slow link, or an assembler's lie) count at
	// the floor: the round is not stretched past what the swarm waits for.
	crawling := Round{Members: ids, Rates: []float64{6000, 6000, 1e-9, 6000}}
	if got := TransferTime(crawling, n, 3000, fp32); got != 2*time.Second {
		t.Errorf("a member claiming 1e-9 B/s: %v, want 2s at the 3000 B/s floor", got)
	}
	// Member 2 owns nothing: it only sends the whole vector once.
	shared := Round{Members: ids, Shares: []int{1, 1, 0, 1}, Rates: []float64{6000, 6000, 3000, 6000}}
	if got := TransferTime(shared, n, 1, fp32); got < 1330*time.Millisecond || got > 1340*time.Millisecond {
		t.Errorf("slow member owning nothing: %v, want 4000 B at 3000 B/s", got)
	}
}

// A failed round widens the next deadline and a success resets it; the
// owners' receipts time each member's uplink, and a member whose frames
// crawl measures a slower one. It runs in a synctest bubble, where time
// moves only when every goroutine waits: the links take the time the
// fault hook gives them (40 ms a frame on the slow one, 1 ms on the
// others), not whatever a loaded CPU adds.
func TestAveragerBacksOffAndMeasuresUplink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		testAveragerBacksOffAndMeasuresUplink(t)
		// A sender of the failed round may reach an owner that already
		// gave up on it; the owner waits for the round to start until its
		// deadline. Let such goroutines run out their (bubble) timers.
		time.Sleep(time.Hour)
	})
}

func testAveragerBacksOffAndMeasuresUplink(t *testing.T) {
	net, ts, ids := memPeers(3)
	net.SlowDelay = 40 * time.Millisecond
	var avs []*Averager
	for _, tr := range ts {
		avs = append(avs, NewAverager(tr, AveragerConfig{Codec: codec(t, "fp32"), RoundTimeout: 2 * time.Second, MinRoundTimeout: 100 * time.Millisecond}))
	}
	rng := rand.New(rand.NewPCG(9, 9))
	const n = 3 * 32768 // 128 KiB parts: enough to time a link
	vecs := [][]float32{randVec(rng, n), randVec(rng, n), randVec(rng, n)}
	samples := []int{1, 1, 1}
	round := func(step uint64) Round {
		return Round{Step: step, Members: ids, Samples: samples, ID: RoundID("ab", step, 0, ids, samples, nil)}
	}
	slow := ids[2]
	net.SetFault(func(e gossip.FrameEvent) gossip.FrameAction {
		if e.Proto != gossip.ProtoAllReduce || !e.Opener {
			return gossip.Deliver
		}
		if e.From == slow {
			return gossip.Slow // its uplink: the parts it sends
		}
		time.Sleep(time.Millisecond) // a fast link still takes a moment (bubble time)
		return gossip.Deliver
	})
	for step := range uint64(3) {
		if _, errs := runRound(t, avs, round(step), vecs); errs[0] != nil || errs[1] != nil || errs[2] != nil {
			t.Fatalf("round %d: %v", step, errs)
		}
	}
	fast, crawl := avs[0].Uplink(), avs[2].Uplink()
	if fast <= 0 || crawl <= 0 {
		t.Fatalf("uplinks %v and %v: the receipts did not time the parts", fast, crawl)
	}
	if crawl > fast/2 {
		t.Errorf("the member whose parts crawl measured %.3g B/s, a fast one %.3g B/s", crawl, fast)
	}
	failures := func(a *Averager) int {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.history[n].failures
	}
	if got := failures(avs[0]); got != 0 {
		t.Fatalf("%d failures after successful rounds", got)
	}
	before, _ := avs[0].budget(round(3), n)
	net.SetFault(nil)
	net.Isolate(ids[2])
	if _, errs := runRound(t, avs[:2], round(3), vecs[:2]); errs[0] == nil {
		t.Fatal("a round with an isolated member succeeded")
	}
	if got := failures(avs[0]); got != 1 {
		t.Errorf("%d failures counted, want 1", got)
	}
	if after, _ := avs[0].budget(round(4), n); after != 2*before {
		t.Errorf("after a failed round the deadline went from %v to %v, want it doubled", before, after)
	}
	pair := Round{Step: 5, Members: ids[:2], Samples: samples[:2], ID: RoundID("ab", 5, 0, ids[:2], samples[:2], nil)}
	if _, errs := runRound(t, avs[:2], pair, vecs[:2]); errs[0] != nil || errs[1] != nil {
		t.Fatalf("a round of the two left: %v", errs)
	}
	again, _ := avs[0].budget(round(6), n)
	if got := failures(avs[0]); got != 0 || again != before {
		t.Errorf("after a success: %d failures, deadline %v; want 0 and %v again", got, again, before)
	}
}
