package node

import (
	"context"
	"errors"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// A swarm larger than the run's MaxGroup averages in Moshpit groups
// (gossip.MoshpitGrid): every peer takes an optimizer step on its own
// gradient, then its group averages the parameters with equal weights.
// Groups rotate every step, so what one group learned reaches the whole
// grid within its number of dimensions of steps, and no round ever waits
// on more than MaxGroup peers.
//
// Replicas then agree closely rather than bit for bit, so the checks that
// rely on identical replicas relax while the swarm is above the cap:
// being one round behind is normal (a late peer keeps its local step and
// is mixed in next time, instead of downloading the state), and the
// per-step hash consensus is off. The run still ends on one state: the
// final-step consensus (ties to the smallest hash) is adopted by all.

// moshpitLag is how many steps a peer may trail the swarm in Moshpit
// mode before it downloads the state instead of catching up by mixing.
const moshpitLag = 8

// moshpit reports the swarm's grid members (sorted, self included) when
// the swarm is larger than the run's maximum group, else nil: one group
// averages gradients exactly.
func (n *Node) moshpit() []peer.ID {
	maxGroup := n.cfg.Run.Averaging.MaxGroup
	if maxGroup == 0 {
		return nil
	}
	live := n.liveTrainers()
	if len(live)+1 <= maxGroup {
		return nil
	}
	self := n.host.ID()
	swarm := []peer.ID{self}
	for p := range live {
		if p != self {
			swarm = append(swarm, p)
		}
	}
	slices.Sort(swarm)
	return swarm
}

// moshpitGroup is this peer's group at step among swarm.
func (n *Node) moshpitGroup(step uint64, swarm []peer.ID) []peer.ID {
	grid := gossip.NewMoshpitGrid(n.run, swarm, n.cfg.Run.Averaging.MaxGroup)
	return grid.GroupOf(step, n.host.ID())
}

// mix is one Moshpit step: a local optimizer step on our own gradient,
// then the group's parameter average. Only an averaged round, or a group
// that went on without us, advances the step; after a failed round the
// local step is kept at the same step and mixed in on the next try.
// local and avg are scratch vectors the size of the parameters.
func (n *Node) mix(ctx context.Context, step uint64, grad []float32, samples int, swarm []peer.ID, local, avg []float32) error {
	copy(local, n.params) // the training loop is the only writer of n.params
	if _, err := n.optimizerStep(step, local, grad); err != nil {
		n.opt.LoadState(n.optState) // back to the committed state
		return err
	}
	group := n.moshpitGroup(step, swarm)
	if len(group) < 2 {
		// A partly filled grid leaves some peers alone in a dimension.
		n.install(step+1, local, nil, swarm)
		return nil
	}
	n.setPhase("averaging")
	r, err := n.mm.Match(ctx, step, samples, group)
	switch {
	case errors.Is(err, gossip.ErrBehind):
		n.log.Debug("group averaged without us; keeping our local step", "step", step)
		n.install(step+1, local, nil, swarm)
		return nil
	case errors.Is(err, gossip.ErrTooFew):
		n.setPhase("waiting for peers")
		n.install(step, local, nil, swarm)
		return nil
	case err != nil:
		n.noteFailure(step, "matchmaking", err)
		n.install(step, local, nil, swarm)
		return nil
	}
	// Parameters, not gradients: every replica counts the same. (A new
	// slice: the assembler still serves the announced one.)
	r.Samples = slices.Repeat([]int{1}, len(r.Members))
	if err := n.av.AllReduce(ctx, r, local, avg); err != nil {
		n.noteFailure(step, "all-reduce", err)
		n.install(step, local, nil, swarm)
		return nil
	}
	n.install(step+1, avg, r.Members, swarm)
	return nil
}

// install makes params the local state at step. members is the group it
// was averaged with (nil: a local step only); swarm becomes the member
// list a later exact round picks its assembler from.
func (n *Node) install(step uint64, params []float32, members, swarm []peer.ID) {
	n.mu.Lock()
	copy(n.params, params)
	n.lastGroup = swarm
	n.commitLocked(step, members)
	n.mu.Unlock()
	n.publish(step)
	n.log.Debug("moshpit step", "step", step, "members", len(members))
}
