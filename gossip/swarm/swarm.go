// Package swarm holds the swarm's decisions: who may assemble a round,
// whom a round waits for, whether this replica is behind, whom to
// download the state from, and which state hash wins. They are pure
// functions of one View — the live members a node's gossip shows, the
// last group it averaged in and its own step and hash — so every
// decision is a table test, with no node, network or clock behind it.
package swarm

import (
	"slices"
	"sort"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
)

// MoshpitLag is how many steps a peer may trail the swarm in Moshpit
// mode before it downloads the state instead of catching up by mixing:
// Moshpit groups do not wait for each other, so a round behind is normal.
const MoshpitLag = 8

// View is one node's knowledge of the swarm at one moment.
type View struct {
	Run  string
	Self peer.ID
	// Live are the peers gossip shows alive (self excluded), any order.
	Live []gossip.Member
	// LastGroup are the members of the last round this node applied (for
	// a joiner: the list that came with the state it downloaded; Moshpit:
	// the grid).
	LastGroup []peer.ID
	Step      uint64 // this node's step
	Hash      string // this node's state hash at Step
	// MinGroup and MaxGroup are the run's (MaxGroup 0: no cap).
	MinGroup, MaxGroup int
}

// trainers are the live peers that are not downloading a state.
func (v View) trainers() []gossip.Member {
	var out []gossip.Member
	for _, m := range v.Live {
		if !m.Syncing && m.Peer != v.Self {
			out = append(out, m)
		}
	}
	return out
}

func (v View) isTrainer(p peer.ID) bool {
	return slices.ContainsFunc(v.trainers(), func(m gossip.Member) bool { return m.Peer == p })
}

// Candidates is who may assemble the group of a step: the members of the
// last round (identical at every member, unlike gossip views, which lag
// by a step or two when steps are fast) that are still live and not
// syncing, plus self if it was one. A newcomer holds the same list (it
// came with the state) and does not count itself until it has been in a
// round, so it picks the same assembler as everyone else. With no last
// round (the first step), every live trainer counts, self included,
// sorted.
func (v View) Candidates() []peer.ID {
	var out []peer.ID
	for _, p := range v.LastGroup {
		if (p == v.Self || v.isTrainer(p)) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) > 0 {
		return out
	}
	out = append(out, v.Self)
	for _, m := range v.trainers() {
		out = append(out, m.Peer)
	}
	slices.Sort(out)
	return out
}

// Expected is whom the assembler of step waits for: its Moshpit group
// above the cap; else the candidates, self, newcomers the view shows at
// step or just finishing step-1, and peers downloading exactly that
// step, so a joiner is in the round right after its download instead of
// chasing a swarm that moves on without it.
func (v View) Expected(step uint64) []peer.ID {
	if grid := v.Moshpit(); grid != nil {
		return v.MoshpitGroup(step, grid)
	}
	out := v.Candidates()
	if !slices.Contains(out, v.Self) {
		out = append(out, v.Self)
	}
	for _, m := range v.Live {
		if m.Peer == v.Self || slices.Contains(out, m.Peer) {
			continue
		}
		if (!m.Syncing && (m.Step == step || m.Step+1 == step)) || (m.Syncing && m.SyncTo == step) {
			out = append(out, m.Peer)
		}
	}
	return out
}

// MinGroupAt is the fewest members a round at step may have: the run's
// minimum, except that a Moshpit grid line smaller than it still counts
// (the swarm as a whole exceeds the cap, and so the minimum; without
// this, peers on a short line would never average again).
func (v View) MinGroupAt(step uint64) int {
	need := v.MinGroup
	if grid := v.Moshpit(); grid != nil {
		need = min(need, len(v.MoshpitGroup(step, grid)))
	}
	return need
}

// Moshpit is the swarm's grid members (sorted, self included) when the
// live trainers outnumber the run's maximum group, else nil: one group
// averages gradients exactly.
func (v View) Moshpit() []peer.ID {
	if v.MaxGroup == 0 {
		return nil
	}
	tr := v.trainers()
	if len(tr)+1 <= v.MaxGroup {
		return nil
	}
	grid := []peer.ID{v.Self}
	for _, m := range tr {
		grid = append(grid, m.Peer)
	}
	slices.Sort(grid)
	return grid
}

// MoshpitGroup is this peer's group at step among grid.
func (v View) MoshpitGroup(step uint64, grid []peer.ID) []peer.ID {
	return allreduce.NewMoshpitGrid(v.Run, grid, v.MaxGroup).GroupOf(step, v.Self)
}

// Behind reports whether a live trainer is already past step (by more
// than MoshpitLag in Moshpit mode): a round happened without us and our
// state is stale. Members of a round apply its step before they look
// again, so a peer that merely finished the same round first is never
// mistaken for one that is ahead.
func (v View) Behind(step uint64) bool {
	var lag uint64
	if v.Moshpit() != nil {
		lag = MoshpitLag
	}
	for _, m := range v.trainers() {
		if m.Step > step+lag {
			return true
		}
	}
	return false
}

// Votes counts the state hashes live replicas hold at step; ours, when
// not empty, is our own vote.
func (v View) Votes(step uint64, ours string) map[string]int {
	votes := map[string]int{}
	if ours != "" {
		votes[ours] = 1
	}
	for _, m := range v.trainers() {
		if m.Step == step && m.Hash != "" {
			votes[m.Hash]++
		}
	}
	return votes
}

// Diverged reports the swarm's consensus at our step when it is not our
// hash: our replica differs and must be downloaded again. Moshpit
// replicas differ by design until the final step, so above the cap
// nothing diverges.
func (v View) Diverged() (consensus string, diverged bool) {
	if v.Moshpit() != nil {
		return "", false
	}
	c := gossip.Consensus(v.Votes(v.Step, v.Hash))
	return c, c != v.Hash
}

// FinalConsensus reports whether our state is the swarm's consensus at
// the final step (the step we are at after the last one).
func (v View) FinalConsensus(final uint64) bool {
	return gossip.Consensus(v.Votes(final, v.Hash)) == v.Hash
}

// Pending reports whether a live peer has not reached final yet.
func (v View) Pending(final uint64) bool {
	return slices.ContainsFunc(v.Live, func(m gossip.Member) bool { return m.Step < final })
}

// NewestStep is the highest step a live trainer reports.
func (v View) NewestStep() uint64 {
	var top uint64
	for _, m := range v.trainers() {
		top = max(top, m.Step)
	}
	return top
}

// Donors ranks the live peers to download from, best first (the newest
// step, then the consensus hash there), with the step to download (the
// newest any of them gossips) and the hash the swarm agrees on there (""
// when the gossiped votes are not there yet). It returns no donors when
// our own state already is the consensus at the newest step.
func (v View) Donors() (donors []peer.ID, top uint64, want string) {
	var cands []gossip.Member
	for _, m := range v.trainers() {
		if m.Hash != "" && m.Step >= v.Step {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return nil, 0, ""
	}
	for _, m := range cands {
		top = max(top, m.Step)
	}
	if top == v.Step {
		want = gossip.Consensus(v.Votes(v.Step, v.Hash))
		if want == v.Hash {
			return nil, 0, ""
		}
	} else {
		want = gossip.Consensus(v.Votes(top, ""))
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.Step != b.Step {
			return a.Step > b.Step
		}
		if (a.Hash == want) != (b.Hash == want) {
			return a.Hash == want
		}
		return a.Peer < b.Peer
	})
	for _, m := range cands {
		donors = append(donors, m.Peer)
	}
	return donors, top, want
}
