package node

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip/statesync"
)

// syncState downloads the state a quorum of the swarm holds at the newest
// step it reached, from peers that averaged with us (or, before our first
// round, our bootstrap peers), and verifies its hash; a state at a step
// nobody gossiped yet must be announced by as many donors as the swarm
// policy asks (swarm.View.MinVouch).
func (n *Node) syncState(ctx context.Context) error {
	n.setPhase("syncing state")
	n.mu.Lock()
	n.rep.syncing = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.rep.syncing = false
		n.mu.Unlock()
	}()
	// An assembler told us the swarm reached at least aheadHint; wait
	// (bounded) until gossip shows a peer there, or we would pick a donor
	// as stale as we are.
	hint := n.aheadHint.Swap(0)
	for wait := n.clock.Now().Add(2 * n.cfg.HeartbeatInterval); hint > 0 && n.clock.Now().Before(wait); {
		if n.swarmView().NewestStep() >= hint {
			break
		}
		n.sleep(ctx, 20*time.Millisecond)
	}
	v := n.swarmView()
	donors, top, want := v.Donors()
	// A replica that diverged may be a step ahead of the quorum that
	// outvoted it: it stepped alone (a joiner whose first round went
	// without it) while the others waited for it, and both sides step
	// in lockstep, each waiting out the other's join window. Stepping on
	// would keep it ahead, and so never anyone's to download from. So it
	// stops (its heartbeats say syncing, so nobody waits for it) until
	// the quorum catches up and shows it a donor, for at most two join
	// windows and a heartbeat.
	if len(donors) == 0 && n.resync.Load() {
		for wait := n.clock.Now().Add(2*n.cfg.JoinWindow + n.cfg.HeartbeatInterval); len(donors) == 0 && n.clock.Now().Before(wait) && ctx.Err() == nil; {
			n.sleep(ctx, 50*time.Millisecond)
			v = n.swarmView()
			donors, top, want = v.Donors()
		}
	}
	if len(donors) == 0 {
		n.resync.Store(false)
		return nil // no quorum ahead of us or against us: our state is the swarm's
	}
	// Download the step after the newest one gossiped: donors hand it over
	// the moment they reach it, and its assembler, told by our heartbeat,
	// waits for us, so we are in that very round. (A stalled swarm never
	// gets there; Fetch then takes the step the donors are at.)
	step := top + 1
	if top >= uint64(n.cfg.Run.Optimizer.Steps) {
		step = top // the final state: nobody goes further
	} else {
		want = "" // the consensus we know is top's
	}
	// A wanted hash was vouched for by the gossiped quorum; a state at a
	// step nobody gossiped yet is vouched for by the donors announcing it.
	vouch := 1
	if want == "" {
		vouch = v.MinVouch()
	}
	n.mu.Lock()
	n.rep.syncTo = step
	nParams, nOpt := len(n.rep.params), len(n.rep.optState)
	n.mu.Unlock()
	n.publishHeartbeat(ctx, false)
	cctx, cancel := n.clock.WithTimeout(ctx, time.Minute)
	defer cancel()
	f, err := n.download.Fetch(cctx, n.net, donors, statesync.Request{
		Run: n.run, NParams: nParams, NOpt: nOpt, Step: step, Want: want, MinVouch: vouch, Clock: n.clock,
		// A donor a round behind usually gets there within a round; one
		// that does not answers "not yet" and the others serve. It must
		// answer within our frame timeout, or a stalled swarm (waiting
		// for us to reach its minimum group) is never pinned where it is.
		Wait: min(max(2*n.av.Deadline(), time.Second), 5*time.Second, n.cfg.FrameTimeout/2),
	})
	if err != nil {
		return err
	}
	for p, err := range f.Failed {
		// Mostly donors that moved on or are syncing themselves; a donor
		// that lied or died is named here too.
		n.log.Info("state donor not used", "peer", p, "err", err)
	}
	if err := n.load(f.Snapshot, f.Hash); err != nil {
		return err
	}
	n.resync.Store(false)
	n.mu.Lock()
	n.stats.syncs++
	n.rep.syncing = false // before the heartbeat: peers must expect us in the next round
	n.mu.Unlock()
	n.log.Info("state synced", "step", f.Step, "hash", f.Hash, "donors", len(f.Chunks), "chunks", fmt.Sprint(chunkCounts(f.Chunks)))
	n.det.void(fmt.Sprintf("state downloaded at step %d", f.Step))
	n.publishHeartbeat(ctx, false)
	return nil
}

// chunkCounts lists how many chunks each donor sent, largest first.
func chunkCounts(m map[peer.ID]int) []int {
	out := make([]int, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

// load installs a downloaded snapshot whose hash was verified.
func (n *Node) load(s statesync.Snapshot, hash string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := &n.local
	// Validate everything before changing anything: no half-loaded state.
	if err := l.model.WriteParams(s.Params); err != nil {
		l.model.WriteParams(n.rep.params)
		return err
	}
	if err := l.opt.LoadState(s.Opt); err != nil {
		l.model.WriteParams(n.rep.params)
		return err
	}
	n.strategy.Reset() // what we owed belonged to the state we drop
	n.log.Info("replacing local state", "was_step", n.rep.step, "was_hash", n.rep.hash, "step", s.Step, "hash", hash)
	copy(n.rep.params, s.Params)
	n.rep.optState = l.opt.AppendState(n.rep.optState[:0])
	n.rep.lastGroup, n.rep.lastMembers = s.Group, s.Group
	n.rep.step = s.Step
	n.rep.hash = hash
	return nil
}

// settle runs after the last step: it waits (bounded) for the live peers
// to finish too and, if the swarm's consensus on the final state is not
// ours, downloads it, so a run never ends with silently different replicas.
// Above the Moshpit cap it also waits while a live peer at the final step
// holds another state (swarm.View.FinalSplit).
func (n *Node) settle(ctx context.Context) {
	n.setPhase("settling")
	final := uint64(n.cfg.Run.Optimizer.Steps)
	deadline := n.clock.Now().Add(4 * n.cfg.PeerExpiry)
	for n.clock.Now().Before(deadline) && ctx.Err() == nil {
		pending := n.swarmView().Pending(final)
		if tried, err := n.adoptFinalConsensus(ctx); tried {
			if err != nil {
				n.sleep(ctx, 200*time.Millisecond)
			}
			continue
		}
		if !pending && !n.swarmView().FinalSplit(final) {
			return
		}
		n.sleep(ctx, 50*time.Millisecond)
	}
}

// adoptFinalConsensus downloads the swarm's consensus state at the final
// step when ours is not it. It reports whether it had to try.
func (n *Node) adoptFinalConsensus(ctx context.Context) (tried bool, err error) {
	if n.swarmView().FinalConsensus(uint64(n.cfg.Run.Optimizer.Steps)) {
		return false, nil
	}
	if err := n.syncState(ctx); err != nil {
		n.log.Warn("final state sync failed", "err", err)
		return true, err
	}
	return true, nil
}

// finish evaluates the final model on the test set and writes result.json.
func (n *Node) finish() *Result {
	n.checkpoint(true)
	n.setPhase("evaluating")
	acc, loss, err := n.local.model.Evaluate(n.local.test)
	if err != nil {
		n.log.Error("evaluate", "err", err)
	}
	n.mu.Lock()
	st := &n.stats
	res := &Result{
		Peer: n.ID().String(), Run: n.run, Step: n.rep.step, Hash: n.rep.hash, Accuracy: acc, TestLoss: loss, InitialTestLoss: st.initialLoss,
		Rounds: st.rounds, Failed: st.failedRounds, Syncs: st.syncs, LargestGroup: st.largestGroup, Partners: len(st.partners),
		BytesSent: n.net.BytesOut(), BytesRecv: n.net.BytesIn(), Seconds: n.clock.Since(n.started).Seconds(),
		LongestFailing: st.longestFailing.Seconds(), PartShare: st.partShare, Params: n.local.model.NumParams(),
		ComputeUtilisation: n.utilisationLocked(n.clock.Now()), Samples: st.samples,
	}
	if res.Control = n.traffic(); res.Control != nil && res.Seconds > 0 {
		res.ControlPerSec = float64(res.Control.ControlBytes) / res.Seconds
	}
	if n.det != nil {
		res.Deterministic = n.det.String()
		res.ModelHash = statesync.HashState(n.rep.step, n.rep.params, n.rep.optState, nil)
	}
	if steps := st.roundsN.step - st.rounds0.step; steps > 0 {
		res.SecondsPerStep = st.roundsN.at.Sub(st.rounds0.at).Seconds() / float64(steps)
	}
	st.phase = "finished"
	n.mu.Unlock()
	if err := writeJSON(filepath.Join(n.cfg.Dir, "result.json"), res); err != nil {
		n.log.Error("write result", "err", err)
	}
	n.log.Info("finished", "step", res.Step, "accuracy", acc, "hash", res.Hash)
	return res
}
