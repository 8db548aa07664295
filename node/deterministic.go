package node

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A deterministic run (compute.deterministic, --deterministic) ends on
// the same state in every run of the same command. What makes two runs
// of one command differ, and what this mode does about each:
//   - Samples per peer per step: a step closes once the swarm's gossiped
//     progress reaches the target batch, so who computed how many
//     minibatches is timing. Here node K of N computes exactly its share
//     (detShare), and a failed round is retried with the same gradient
//     rather than more samples.
//   - Which rows: the batch order (and dropout) is seeded by the peer ID,
//     new every run unless the key in --dir is kept. Here by the rank, the
//     K of --shard K/N, which also picks the shard.
//   - Who is in a round: an assembler closes on whoever joined within the
//     join window. Here the window is long enough (deterministicWindow)
//     that every live member makes it; a death or a joiner changes the
//     round and voids the run.
//   - The order an owner sums copies in: members are sorted by peer ID.
//     Here by the copies' contents (allreduce.AveragerConfig.ContentOrder).
//   - Part boundaries, which move a lossy codec's blocks: sized by
//     measured uplinks. Here even (allreduce.MatchConfig.EvenShares).
//   - DiLoCo phases end when the swarm has taken H steps per peer. Here
//     every phase is exactly H steps.
//   - Already fixed for every run: local accumulation adds minibatch
//     gradients in the order they are computed; the native engine's GEMM
//     sums each output in the same order however many cores split it
//     (trainer/kernels); optimizers round explicitly, without FMA.
//   - Not fixed: the state hash covers the last round's peer IDs, new
//     every run, so runs are compared by the model hash (step, parameters
//     and optimizer state; Result.ModelHash). And bits hold on one kind of
//     CPU: the GEMM kernel differs by CPU (FMA or not).

// determinism is a deterministic run's bookkeeping: the node's rank and
// the swarm's size, and whether something has voided it. Nil: the run is
// not deterministic.
type determinism struct {
	rank, size int
	log        *slog.Logger

	mu      sync.Mutex
	members []peer.ID // the first round's, sorted: every later round's
	voided  string    // why the run can no longer be reproduced ("": it can)
}

func newDeterminism(cfg Config, log *slog.Logger) *determinism {
	if !cfg.Run.Compute.Deterministic {
		return nil
	}
	return &determinism{rank: cfg.Shard, size: cfg.Shards, log: log}
}

// detShare is how many minibatches node rank of size computes per step:
// the target batch in minibatches (rounded up), split evenly, the
// remainder one each to the lowest ranks.
func detShare(target, batch, rank, size int) int {
	m := (target + batch - 1) / batch
	s := m / size
	if rank < m%size {
		s++
	}
	return s
}

// samples is this node's share of a step's samples.
func (d *determinism) samples(r RunConfig) int {
	return detShare(r.Optimizer.TargetBatch, r.Compute.Batch, d.rank, d.size) * r.Compute.Batch
}

// void records, once, that this run can no longer be reproduced; the run
// goes on as an ordinary one.
func (d *determinism) void(reason string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.voided != "" {
		return
	}
	d.voided = reason
	d.log.Warn("deterministic run voided: training goes on, but another run of this command may end on another state", "reason", reason)
}

// round checks the members of a round applied at step against the
// swarm's: the first round fixes them, and a round of any other set (a
// member gone, a newcomer in) voids the run.
func (d *determinism) round(step uint64, members []peer.ID) {
	if d == nil || members == nil {
		return
	}
	got := slices.Sorted(slices.Values(members))
	d.mu.Lock()
	first := d.members == nil
	if first {
		d.members = got
	}
	want := d.members
	d.mu.Unlock()
	switch {
	case len(got) != d.size:
		d.void(fmt.Sprintf("the round of step %d had %d members, the run %d", step, len(got), d.size))
	case !first && !slices.Equal(got, want):
		d.void(fmt.Sprintf("the round of step %d had other members than the first round", step))
	}
}

// String is what /status and the result say: "on", or "voided (why)";
// "" when the run is not deterministic.
func (d *determinism) String() string {
	if d == nil {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.voided != "" {
		return "voided (" + d.voided + ")"
	}
	return "on"
}

// dataSeed seeds this node's batch order and dropout: the run seed and
// the peer ID, so that peers sampling the whole set visit it in
// different orders; in a deterministic run the rank instead, as peer IDs
// are new every run.
func (n *Node) dataSeed() uint64 {
	if n.det != nil {
		return n.cfg.Run.Seed ^ peerSeed(peer.ID("rank/"+strconv.Itoa(n.det.rank)))
	}
	return n.cfg.Run.Seed ^ peerSeed(n.ID())
}

// joinWindow is how long an assembler waits for the peers it expects. A
// deterministic run waits for every member, so the window only bounds
// the wait for one that is still live by gossip but will not come: a
// dead member leaves the view after PeerExpiry and the round closes then
// (and voids the run).
func (n *Node) joinWindow() time.Duration {
	if n.det != nil {
		return max(n.cfg.JoinWindow, deterministicWindow*n.cfg.PeerExpiry)
	}
	return n.cfg.JoinWindow
}

// deterministicWindow is the join window of a deterministic run, in peer
// expiries: a slow member (a loaded CPU, a GC pause) still makes it,
// while a dead one has long left the view.
const deterministicWindow = 3

// detRetryPause spaces a deterministic node's retries of a failed or
// refused round: it holds its share and computes nothing meanwhile, and
// a refusal can come at once.
const detRetryPause = 100 * time.Millisecond
