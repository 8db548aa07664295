package node

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
	"github.com/swarmtrain/swarmtrain/gossip/swarm"
)

// participationWindow and participationCap size the participation
// weights (swarm.Participation): a peer that shared one of our last 4096
// applied rounds has one vote on which state the swarm holds. A 30 s
// partition at tens of steps per second stays well inside the window, so
// both halves still know each other when it heals, and a cap of one makes
// every recent partner weigh the same: rounds shared during a cut never
// outweigh the rounds shared before it, and the halves' equal weights
// converge by the tie-break.
const (
	participationWindow = 4096
	participationCap    = 1
)

// swarmView is what this node knows of the swarm now: the input of every
// swarm decision (package swarm).
func (n *Node) swarmView() swarm.View {
	n.mu.Lock()
	step, hash, last := n.rep.step, n.rep.hash, n.rep.lastGroup
	weight, boot := n.part.Weights(), slices.Clone(n.bootstrap)
	n.mu.Unlock()
	return swarm.View{Run: n.run, Self: n.ID(), Live: n.view.Live(n.clock.Now()), LastGroup: last, Step: step, Hash: hash,
		MinGroup: n.cfg.Run.Averaging.MinGroup, MaxGroup: n.cfg.Run.Averaging.MaxGroup,
		Weight: weight, Bootstrap: boot, Final: uint64(n.cfg.Run.Optimizer.Steps), Client: n.client()}
}

// behind reports whether the swarm went past step without us.
func (n *Node) behind(step uint64) bool { return n.swarmView().Behind(step) }

// matchView shows the swarm to the node's matchmaker.
type matchView struct{ n *Node }

func (v matchView) Step() uint64             { return v.n.currentStep() }
func (v matchView) Behind(step uint64) bool  { return v.n.behind(step) }
func (v matchView) MinGroup(step uint64) int { return v.n.swarmView().MinGroupAt(step) }

// Expected leaves us out once we announced our leave: a group we still
// assemble for others does not wait for us.
func (v matchView) Expected(step uint64) []peer.ID {
	exp := v.n.swarmView().Expected(step)
	if v.n.leaving.Load() {
		exp = slices.DeleteFunc(exp, func(p peer.ID) bool { return p == v.n.ID() })
	}
	return exp
}

// checkAgreement compares our state hash with the live peers at our
// step. If the swarm's consensus (most replicas, ties to the smallest
// hash) is another state, our replica diverged and is downloaded again.
// It also logs, once per peer and reason, the claimed steps the swarm
// policy ignores.
func (n *Node) checkAgreement() {
	v := n.swarmView()
	if c, diverged := v.Diverged(); diverged {
		votes := v.Votes(v.Step, v.Hash)
		n.log.Warn("state differs from the swarm's consensus; will resync", "step", v.Step, "ours", v.Hash, "consensus", c, "weight", votes[c], "our_weight", votes[v.Hash])
		n.resync.Store(true)
	}
	n.logIgnored(v)
}

// logIgnored logs each claim the swarm policy ignores, once per peer and
// reason: a hostile peer gossips every heartbeat, the log says it once.
func (n *Node) logIgnored(v swarm.View) {
	for _, c := range v.Ignored() {
		key := swarm.Claim{Peer: c.Peer, Reason: c.Reason}
		n.mu.Lock()
		seen := n.ignored[key]
		if !seen && len(n.ignored) < maxIgnoredLogged {
			n.ignored[key] = true
		}
		n.mu.Unlock()
		if !seen {
			n.log.Warn("ignoring a peer's claimed step", "peer", c.Peer, "step", c.Step, "our_step", v.Step, "reason", c.Reason)
		}
	}
}

// maxIgnoredLogged bounds the memory of logged claims (a crowd of fresh
// identities is logged up to this many, then on every tick).
const maxIgnoredLogged = 1024

// strategyEnv is the node as its averaging strategy sees it.
type strategyEnv struct{ n *Node }

func (e strategyEnv) Swarm() swarm.View { return e.n.swarmView() }

func (e strategyEnv) Match(ctx context.Context, step uint64, samples int, group []peer.ID) (allreduce.Round, error) {
	e.n.setPhase("averaging")
	r, err := e.n.mm.Match(ctx, step, samples, group)
	e.n.matchedAt = e.n.clock.Now()
	return r, err
}

func (e strategyEnv) MatchRef(ctx context.Context, step uint64, samples int, group []peer.ID, ref string) (allreduce.Round, error) {
	e.n.setPhase("averaging")
	return e.n.mm.MatchRef(ctx, step, samples, group, ref)
}

// Params copies the committed parameters (the training loop is their
// only writer, and the strategy runs in it).
func (e strategyEnv) Params(dst []float32) { copy(dst, e.n.rep.params) }

func (e strategyEnv) LocalStep(step uint64, params, grad []float32) error {
	if _, err := e.n.optimizerStep(step, params, grad); err != nil {
		e.n.local.opt.LoadState(e.n.rep.optState) // back to the committed state
		return err
	}
	return nil
}
