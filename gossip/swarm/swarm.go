// Package swarm holds the swarm's decisions: who may assemble a round,
// whom a round waits for, whether this replica is behind, whom to
// download the state from, and which state hash wins. They are pure
// functions of one View — the live members a node's gossip shows, the
// last group it averaged in, its own step and hash, and how much each
// peer has recently averaged with it — so every decision is a table
// test, with no node, network or clock behind it.
//
// State is never adopted on one peer's word: only peers that have
// averaged with this node vouch for a state (their weight is their
// Participation), a state replaces ours only with a quorum of that
// weight behind it, and a claimed step beyond the run's end counts for
// nothing.
package swarm

import (
	"cmp"
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
	// LastGroup are the part owners of the last round this node applied
	// (for a joiner: the list that came with the state it downloaded;
	// Moshpit: the grid).
	LastGroup []peer.ID
	// Client: this node cannot be dialled (see gossip.Heartbeat.Client).
	Client bool
	Step   uint64 // this node's step
	Hash   string // this node's state hash at Step
	// MinGroup and MaxGroup are the run's (MaxGroup 0: no cap).
	MinGroup, MaxGroup int
	// Links, when set, are the measured link costs between peers that
	// every peer shares: Moshpit groups follow them (peers near each
	// other on the same lines, averaging more often; see
	// allreduce.NewMoshpitGridLinks). Nil: the hash layout.
	Links allreduce.LinkCost
	// Weight is each peer's participation weight (Participation.Weights):
	// only live peers that weigh something vouch for a state, donate it
	// or make this node behind. With none of them live (a joiner, a fresh
	// start), the live Bootstrap peers do, one vote each.
	Weight map[peer.ID]int
	// Bootstrap are the peers this node joined through (--join).
	Bootstrap []peer.ID
	// Final is the run's last step: a peer claiming a step beyond it is
	// ignored altogether (0: no limit).
	Final uint64
}

// trainers are the live peers that are not downloading a state and do
// not claim a step beyond the run's end.
func (v View) trainers() []gossip.Member {
	var out []gossip.Member
	for _, m := range v.Live {
		if !m.Syncing && m.Peer != v.Self && !v.beyondFinal(m) {
			out = append(out, m)
		}
	}
	return out
}

func (v View) beyondFinal(m gossip.Member) bool { return v.Final > 0 && m.Step > v.Final }

// voter is a trainer whose word counts, and how much.
type voter struct {
	gossip.Member
	w int
}

// electorate is who vouches for states, and how much.
type electorate struct {
	active []voter // voters not downloading a state: their steps and hashes count
	self   int     // our own weight
	total  int     // the weight of every voter: syncing ones and self included
	n      int     // how many voters, self included when it weighs
}

// electorate weighs the live peers (claims beyond the run's end aside):
// those that have recently averaged with us, by participation weight;
// and ourselves, as much as our heaviest voter (our replica is one honest
// replica among theirs). A voter downloading a state holds no hash now
// but still counts in the total, so peers busy syncing do not hand the
// rest of the swarm's weight to whoever is left. A node that has averaged
// with none of the live peers (a joiner; a node at its first step)
// follows its live bootstrap peers, one vote each, and gives its own
// state no weight: it came to follow them. With neither, nobody vouches
// for anything and the node keeps its own state (it trains on, and its
// first round gives it a history); a joiner whose bootstrap peers left
// before it synced must be pointed at a live peer again.
func (v View) electorate() electorate {
	var e electorate
	var all []voter
	for _, m := range v.Live {
		if m.Peer == v.Self || v.beyondFinal(m) {
			continue
		}
		if w := v.Weight[m.Peer]; w > 0 {
			all = append(all, voter{m, w})
			e.self = max(e.self, w)
		}
	}
	weighed := len(all) > 0
	if v.Client && slices.ContainsFunc(all, func(m voter) bool { return !m.Client }) {
		// A client defers to the owners it averaged with: they hold the
		// parts, and its clients' word (its own too) cannot outvote them.
		// Else an owner that had to step on without two late clients
		// (both then at the old step) could never be followed: one owner
		// against two client voters is no quorum, and the clients would
		// train on alone, each on its own state.
		all = slices.DeleteFunc(all, func(m voter) bool { return m.Client })
		e.self = 0
	} else if !v.Client {
		// An owner counts a client's word only as an echo of an owner's:
		// a client holds a state an owner also holds (their rounds had an
		// owner), or one no owner vouches for, made in a round of clients
		// alone while the owners were away. Following that one, an owner
		// would chase the clients while they defer to it: after a 2|2
		// split of two owners and two clients, each side resynced to the
		// other's state and nobody kept one (TestHomeNodesPunch).
		voters := slices.Clone(all)
		owned := func(c voter) bool {
			return (c.Step == v.Step && c.Hash == v.Hash) || slices.ContainsFunc(voters, func(o voter) bool {
				return !o.Client && !o.Syncing && o.Step == c.Step && o.Hash == c.Hash
			})
		}
		all = slices.DeleteFunc(all, func(m voter) bool { return m.Client && !owned(m) })
	}
	if !weighed {
		for _, m := range v.Live {
			if m.Peer != v.Self && !v.beyondFinal(m) && slices.Contains(v.Bootstrap, m.Peer) {
				all = append(all, voter{m, 1})
			}
		}
	}
	e.total, e.n = e.self, len(all)
	if e.self > 0 {
		e.n++
	}
	for _, m := range all {
		e.total += m.w
		if !m.Syncing {
			e.active = append(e.active, m)
		}
	}
	return e
}

// quorum reports whether a state held by holders other peers of weight w
// carries the swarm's word among n voters (self included when it
// weighs) of total weight: at least half the weight — at least, not more than, so that
// the halves of an even split heal by the tie-break instead of never —
// and, among three or more voters, from at least two distinct peers, so
// that no single peer moves a swarm of three.
func quorum(w, total, holders, n int) bool {
	if w <= 0 || 2*w < total {
		return false
	}
	return n < 3 || holders >= 2
}

// MinVouch is how many donors must announce one state before a download
// at a step nobody gossiped yet is adopted: two among three or more
// voters (self included), as for a gossiped state, else one (and one
// above the Moshpit cap).
func (v View) MinVouch() int {
	if v.Moshpit() != nil {
		return 1 // replicas differ by design: no two donors hold one state
	}
	if e := v.electorate(); e.n >= 3 && len(e.active) >= 2 {
		return 2
	}
	return 1
}

// isClient reports whether p cannot be dialled, as far as we know: self
// by our own mode, others by their heartbeats.
func (v View) isClient(p peer.ID) bool {
	if p == v.Self {
		return v.Client
	}
	i := slices.IndexFunc(v.Live, func(m gossip.Member) bool { return m.Peer == p })
	return i >= 0 && v.Live[i].Client
}

// forkedAhead lists the trainers past our step when no quorum is: each
// took a step in a group the swarm's majority was not in.
func (v View) forkedAhead() []peer.ID {
	if v.Behind(v.Step) {
		return nil // a quorum is ahead: we download, whoever assembles
	}
	var out []peer.ID
	for _, m := range v.trainers() {
		if m.Step > v.Step {
			out = append(out, m.Peer)
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
//
// A member of the last round that claims a step past ours without a
// quorum behind it stepped on in a minority group: it can no longer
// assemble our step (it answers "behind"), yet its word alone does not
// move us, so asking it would stall the majority for good.
func (v View) Candidates() []peer.ID {
	var out []peer.ID
	forked := v.forkedAhead()
	for _, p := range v.LastGroup {
		if (p == v.Self || v.isTrainer(p)) && !slices.Contains(out, p) && !slices.Contains(forked, p) {
			out = append(out, p)
		}
	}
	// Clients cannot be dialled, so they assemble only when nobody else
	// can: not while an owner of the last group is here, and not while
	// any owner trains. A client that assembled anyway (it turned client
	// after its last round; it was alone for a moment) would wait for
	// the owners, close the group alone and, its last group now itself,
	// train on alone for the rest of the run, on its own state
	// (TestHomeNodesNoPunch).
	if owners := slices.DeleteFunc(slices.Clone(out), v.isClient); len(owners) > 0 {
		return owners
	}
	// Nor while an owner downloads a state: a round of clients alone
	// makes a state no owner holds, which the owners, back from their
	// download, do not follow (see electorate).
	ownerLive := slices.ContainsFunc(v.Live, func(m gossip.Member) bool {
		return m.Peer != v.Self && !m.Client && !v.beyondFinal(m)
	})
	if len(out) > 0 && !ownerLive {
		return out
	}
	// Heartbeats may disagree on who is a client for a moment; the
	// rounds after the first use LastGroup, which every member shares.
	out = out[:0]
	var clients []peer.ID
	add := func(p peer.ID, client bool) {
		if client {
			clients = append(clients, p)
		} else {
			out = append(out, p)
		}
	}
	add(v.Self, v.Client)
	for _, m := range v.trainers() {
		add(m.Peer, m.Client)
	}
	if len(out) == 0 && v.Client && ownerLive {
		// Every owner is downloading: ask them, and wait.
		for _, m := range v.Live {
			if m.Peer != v.Self && !m.Client && !v.beyondFinal(m) {
				out = append(out, m.Peer)
			}
		}
	}
	if len(out) == 0 {
		out = clients
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
//
// A joiner that has not yet averaged with anyone never steps alone,
// whatever the run's minimum: it came to follow its bootstrap peers, and
// a round of one would fork it off their state. Were it then faster
// than they are (its rounds take no time), it would stay ahead of every
// voter, compare its hash with none, and end the run on its own state
// (TestHomeNodesPunch under load: a home node that lost sight of the
// swarm for a moment right after its download).
//
// Nor does any round of fewer than half the voters (self included), so
// that a quorum, not whoever happened to be on time, decides the swarm's
// next state. Under load an assembler's join window can pass before
// the others' joins arrive; closing alone at --min-group 1 forked it
// off the three others, who kept asking it (their candidate) and were
// told "behind" while it trained alone to the end (the BERT demo, 4
// nodes at load 30: three hashes). Waiting, it retries with them.
func (v View) MinGroupAt(step uint64) int {
	need := v.MinGroup
	if grid := v.Moshpit(); grid != nil {
		return min(need, len(v.MoshpitGroup(step, grid)))
	}
	if len(v.Bootstrap) > 0 && !v.averaged() {
		need = max(need, 2)
	}
	if e := v.electorate(); e.self > 0 {
		need = max(need, (e.n+1)/2)
	}
	return need
}

// averaged reports whether we have averaged with any peer lately.
func (v View) averaged() bool {
	for _, w := range v.Weight {
		if w > 0 {
			return true
		}
	}
	return false
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
	return v.MoshpitGrid(grid).GroupOf(step, v.Self)
}

// MoshpitGrid lays out grid's members (see Moshpit) as every peer does.
func (v View) MoshpitGrid(grid []peer.ID) allreduce.MoshpitGrid {
	return allreduce.NewMoshpitGridLinks(v.Run, grid, v.MaxGroup, v.Links)
}

// Behind reports whether a quorum of the voters is already past step (by
// more than MoshpitLag in Moshpit mode): rounds happened without us and
// our state is stale. One peer's claim, or any number of fresh
// identities', is not enough: the node keeps training. Members of a
// round apply its step before they look again, so a peer that merely
// finished the same round first is never mistaken for one that is ahead.
func (v View) Behind(step uint64) bool {
	var lag uint64
	if v.Moshpit() != nil {
		lag = MoshpitLag
	}
	return v.Reached(step) > step+lag
}

// Reached is the newest step beyond after that a quorum of the voters
// has reached (after itself when none has): how far the swarm's rounds
// have gone, whatever any one peer claims.
func (v View) Reached(after uint64) uint64 {
	e := v.electorate()
	vs := slices.Clone(e.active)
	slices.SortFunc(vs, func(a, b voter) int { return cmp.Compare(b.Step, a.Step) })
	w, holders := 0, 0
	for i, m := range vs {
		if m.Step <= after {
			break
		}
		w, holders = w+m.w, holders+1
		if i+1 < len(vs) && vs[i+1].Step == m.Step {
			continue // everyone at this step first
		}
		have := w
		if v.Step >= m.Step {
			have += e.self // we are there too
		}
		if quorum(have, e.total, holders, e.n) {
			return m.Step
		}
	}
	return after
}

// Votes weighs the state hashes the voters hold at step; ours, when not
// empty, carries our own weight.
func (v View) Votes(step uint64, ours string) map[string]int {
	votes, _, _ := v.votes(step, ours)
	return votes
}

// votes is Votes with how many peers hold each hash, and the electorate.
func (v View) votes(step uint64, ours string) (votes, holders map[string]int, e electorate) {
	e = v.electorate()
	votes, holders = map[string]int{}, map[string]int{}
	if ours != "" {
		votes[ours] = e.self
	}
	for _, m := range e.active {
		if m.Step == step && m.Hash != "" {
			votes[m.Hash] += m.w
			holders[m.Hash]++
		}
	}
	return votes, holders, e
}

// Consensus is the state the swarm vouches for at step: the hash of the
// most weight, ties to the smallest (so both halves of a split pick the
// same), when a quorum holds it; else ours, which may be "".
//
// Above the Moshpit cap replicas differ by design, so no state can have
// a quorum, and each node's voters are only the partners its groups
// gave it: there the smallest hash any voter holds wins. Hashes only
// shrink, so the swarm converges on its smallest along the partner
// graph. Fresh identities still weigh nothing, but one participant's
// state can win (see docs/ARCHITECTURE.md).
func (v View) Consensus(step uint64, ours string) string {
	votes, holders, e := v.votes(step, ours)
	if v.Moshpit() != nil {
		best := ours
		for h, w := range votes {
			if w > 0 && h != "" && (best == "" || h < best) {
				best = h
			}
		}
		return best
	}
	if c := gossip.Consensus(votes); c != "" && c != ours && quorum(votes[c], e.total, holders[c], e.n) {
		return c
	}
	return ours
}

// Diverged reports the swarm's consensus at our step when it is not our
// hash: a quorum holds another state, so our replica differs and must be
// downloaded again. Moshpit replicas differ by design until the final
// step, so above the cap nothing diverges.
func (v View) Diverged() (consensus string, diverged bool) {
	if v.Moshpit() != nil {
		return "", false
	}
	c := v.Consensus(v.Step, v.Hash)
	return c, c != v.Hash
}

// FinalConsensus reports whether our state stands at the final step (the
// step we are at after the last one): no quorum holds another.
func (v View) FinalConsensus(final uint64) bool {
	return v.Consensus(final, v.Hash) == v.Hash
}

// FinalSplit reports, above the Moshpit cap, whether a live peer at
// final holds another state than ours: the smallest hash spreads one
// hop of the partner graph per download, so the run is not over until
// it reached everyone (a node that left early took its vote along, and
// an 8-peer swarm ended on two states).
func (v View) FinalSplit(final uint64) bool {
	if v.Moshpit() == nil {
		return false
	}
	return slices.ContainsFunc(v.Live, func(m gossip.Member) bool {
		return !m.Syncing && m.Step == final && m.Hash != "" && m.Hash != v.Hash
	})
}

// Pending reports whether a live peer has not reached final yet.
func (v View) Pending(final uint64) bool {
	return slices.ContainsFunc(v.Live, func(m gossip.Member) bool { return m.Step < final })
}

// NewestStep is the highest step a voter reports.
func (v View) NewestStep() uint64 {
	var top uint64
	for _, m := range v.electorate().active {
		top = max(top, m.Step)
	}
	return top
}

// Ignored lists the live peers whose claimed step the swarm policy does
// not follow, with why: a step beyond the run's end, or one ahead of
// what a quorum has reached (and of our next step) on that peer's word.
func (v View) Ignored() []Claim {
	var out []Claim
	reached := v.Reached(v.Step)
	for _, m := range v.Live {
		switch {
		case m.Syncing || m.Peer == v.Self:
		case v.beyondFinal(m):
			out = append(out, Claim{m.Peer, m.Step, "beyond the run's last step"})
		case m.Step > max(reached, v.Step+1):
			out = append(out, Claim{m.Peer, m.Step, "ahead of what the swarm's rounds show"})
		}
	}
	return out
}

// Claim is a peer's claimed step and why it is ignored.
type Claim struct {
	Peer   peer.ID
	Step   uint64
	Reason string
}

// Donors ranks the voters to download from, best first (the newest step,
// then the consensus hash there), with the step to download (the newest
// a quorum has reached) and the hash a quorum vouches for there (""
// when the gossiped votes are not there yet). It returns no donors when
// no quorum is ahead of us or holds another state at our step: nothing
// replaces our state on the word of peers that never averaged with us,
// or of one peer alone.
func (v View) Donors() (donors []peer.ID, top uint64, want string) {
	var cands []gossip.Member
	var clients []gossip.Member
	for _, m := range v.electorate().active {
		switch {
		case m.Hash == "" || m.Step < v.Step:
		case m.Client: // it votes, but serves only when nobody else can
			clients = append(clients, m.Member)
		default:
			cands = append(cands, m.Member)
		}
	}
	if len(cands) == 0 {
		cands = clients
	}
	if len(cands) == 0 {
		return nil, 0, ""
	}
	if top = v.Reached(v.Step); top == v.Step {
		want = v.Consensus(v.Step, v.Hash)
		if want == v.Hash {
			return nil, 0, ""
		}
	} else {
		want = v.Consensus(top, "")
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
