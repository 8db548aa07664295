package node

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

func TestDetShare(t *testing.T) {
	for _, tc := range []struct {
		target, batch, size int
		want                []int
	}{
		{64, 16, 3, []int{2, 1, 1}}, // 4 minibatches: the remainder to rank 0
		{48, 16, 3, []int{1, 1, 1}},
		{50, 16, 3, []int{2, 1, 1}}, // 50 samples round up to 4 minibatches
		{256, 64, 4, []int{1, 1, 1, 1}},
		{32, 16, 3, []int{1, 1, 0}}, // Validate refuses it: rank 2 has nothing to send
	} {
		total := 0
		for rank, want := range tc.want {
			got := detShare(tc.target, tc.batch, rank, tc.size)
			if got != want {
				t.Errorf("target %d batch %d: rank %d of %d computes %d minibatches, want %d", tc.target, tc.batch, rank, tc.size, got, want)
			}
			total += got
		}
		if want := (tc.target + tc.batch - 1) / tc.batch; total != want {
			t.Errorf("target %d batch %d over %d: %d minibatches in all, want %d", tc.target, tc.batch, tc.size, total, want)
		}
	}
	c := DefaultConfig()
	c.Dir = t.TempDir()
	c.Run.Compute.Deterministic = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--shard K/N") {
		t.Errorf("deterministic without shards: %v", err)
	}
	c.Shard, c.Shards = 0, 5
	c.Run.Optimizer.TargetBatch = 4 * c.Run.Compute.Batch
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "target_batch >= 320") {
		t.Errorf("fewer minibatches than nodes: %v", err)
	}
}

// detSwarm starts k = len(order) deterministic nodes: the i-th started
// gets shard order[i] (the first is the one the others join), and the
// peer IDs come from seed, so two calls differ in everything a run of
// the same command may differ in but the ranks.
func detSwarm(t *testing.T, seed byte, order []int, steps int, tweak func(*Config)) (*memSwarm, []*running) {
	t.Helper()
	sw, data := newMemSwarm(), tinyData(t)
	sw.rng = rand.NewChaCha8([32]byte{seed})
	i := 0
	return sw, swarmOf(t, sw, data, len(order), steps, func(c *Config) {
		c.Run.Compute.Deterministic = true
		c.Run.Optimizer.TargetBatch = 64 // 4 minibatches of 16: 2, 1, 1
		c.Shard, c.Shards = order[i], len(order)
		// A peer silent for memConfig's second under load would leave a
		// round, and void the run: deaths here are real ones.
		c.PeerExpiry = 3 * time.Second
		i++
		if tweak != nil {
			tweak(c)
		}
	})
}

// rankOrder is the ranks of res (res[i] has rank order[i]) in the order
// of their peer IDs: a round's member order.
func rankOrder(res []*Result, order []int) []int {
	idx := []int{0, 1, 2}[:len(res)]
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(res[a].Peer, res[b].Peer) })
	out := make([]int, len(idx))
	for i, j := range idx {
		out[i] = order[j]
	}
	return out
}

func waitAll(t *testing.T, nodes []*running) []*Result {
	t.Helper()
	var res []*Result
	for _, r := range nodes {
		res = append(res, r.wait(t, 90*time.Second))
	}
	return res
}

// Two runs of the same deterministic command end on the same model, bit
// for bit, though their peer IDs, who bootstraps whom and so who
// assembles, owns which part and sends first all differ: sync mode in
// fp32 and in int8 (error feedback, blockwise scales), and DiLoCo,
// plain and overlapped.
func TestInProcessDeterministic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps int
		tweak func(*Config)
	}{
		{"sync-fp32", 8, nil},
		{"sync-int8", 8, func(c *Config) { c.Run.Averaging.Codec = "int8" }},
		{"diloco", 4, func(c *Config) {
			c.Run.Averaging.Mode, c.Run.Averaging.InnerSteps = ModeDiLoCo, 3
		}},
		{"diloco-overlap", 4, func(c *Config) {
			c.Run.Averaging.Mode, c.Run.Averaging.InnerSteps = ModeDiLoCoOverlap, 3
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, a := detSwarm(t, 1, []int{0, 1, 2}, tc.steps, tc.tweak)
			first := waitAll(t, a)
			_, b := detSwarm(t, 3, []int{2, 0, 1}, tc.steps, tc.tweak)
			second := waitAll(t, b)
			// Members are ordered by peer ID: the owners' sums would go
			// in another order of ranks were it not for ContentOrder.
			if x, y := rankOrder(first, []int{0, 1, 2}), rankOrder(second, []int{2, 0, 1}); slices.Equal(x, y) {
				t.Fatalf("both runs order their members as ranks %v: the test shows nothing", x)
			}
			all := append(first, second...)
			for _, r := range all {
				if r.Step != uint64(tc.steps) || r.ModelHash != all[0].ModelHash || r.Deterministic != "on" {
					for _, r := range all {
						t.Logf("%s: step %d model hash %s hash %s deterministic %q", r.Peer, r.Step, r.ModelHash, r.Hash, r.Deterministic)
					}
					t.Fatal("two runs of one deterministic command did not end on one model")
				}
			}
		})
	}
}

// A peer that crashes voids a deterministic run: the survivors train on
// to the end and say why their state is not the one another run gets.
func TestInProcessDeterministicVoided(t *testing.T) {
	const steps = 200 // long enough to outlast the crash
	_, nodes := detSwarm(t, 1, []int{0, 1, 2}, steps, nil)
	testutil.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error { return atLeast(nodes[0].n, 3) })
	if st := nodes[0].n.Status(); st.Deterministic != "on" {
		t.Fatalf("before the crash /status says deterministic %q, want on", st.Deterministic)
	}
	nodes[2].n.net.Close() // a crash: nothing announced
	nodes[2].cancel()
	for _, r := range waitAll(t, nodes[:2]) {
		t.Logf("%s: deterministic %q", r.Peer, r.Deterministic)
		if r.Step != steps || !strings.HasPrefix(r.Deterministic, "voided (") || !strings.Contains(r.Deterministic, "members") {
			t.Errorf("%s: step %d, deterministic %q, want the last step and voided by a round's members", r.Peer, r.Step, r.Deterministic)
		}
	}
}

// A newcomer voids a deterministic run too: the rounds it joins are not
// the fixed swarm's, and it came in through a state download.
func TestInProcessDeterministicJoinerVoids(t *testing.T) {
	const steps = 200
	sw, nodes := detSwarm(t, 1, []int{0, 1, 2}, steps, nil)
	// On an idle machine the three ran all 200 steps before the joiner
	// was up, and it only downloaded the final state. From step 3 their
	// joins wait here until the joiner holds the swarm's state (20 s at
	// most), so it is in the rounds that follow.
	var joiner atomic.Pointer[running]
	hold := func(from, _ peer.ID, proto protocol.ID) {
		if proto != gossip.ProtoMatch || atLeast(nodes[0].n, 3) != nil {
			return
		}
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if j := joiner.Load(); j != nil && (from == j.n.ID() || j.n.currentStep() >= 3) {
				return
			}
		}
	}
	sw.beforeOpen.Store(&hold)
	testutil.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error { return atLeast(nodes[0].n, 3) })
	late := memConfig(t, sw, tinyData(t), steps)
	late.Run = nodes[0].n.cfg.Run
	late.Shard, late.Shards = 1, 3
	late.Join = []string{nodes[0].n.Addrs()[0]}
	joiner.Store(start(t, late))
	for _, r := range waitAll(t, append(nodes, joiner.Load())) {
		t.Logf("%s: deterministic %q", r.Peer, r.Deterministic)
		if r.Step != steps || !strings.HasPrefix(r.Deterministic, "voided (") {
			t.Errorf("%s: step %d, deterministic %q, want the last step and voided", r.Peer, r.Step, r.Deterministic)
		}
	}
}
