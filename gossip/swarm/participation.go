package swarm

import "github.com/libp2p/go-libp2p/core/peer"

// Participation is how much each peer has recently averaged with this
// node: the weight its word carries when the swarm decides which state
// to hold (View.Weight). A peer's weight is the number of this node's
// last Window applied rounds it was a member of, capped at Cap. Fresh
// identities weigh nothing until they have been in a round with us, and
// no identity weighs more than Cap, however long it has been around.
//
// It is plain data with no clock: rounds are counted, not timed. Not safe
// for concurrent use.
type Participation struct {
	// Window is how many of our latest applied rounds count. A peer that
	// shared none of them is forgotten. Long enough that the halves of a
	// partition still know each other when it heals (a side that forgot
	// the other would trust only itself), short enough that an identity
	// must keep contributing to keep a say.
	Window uint64
	// Cap is the most a peer can weigh. A cap of 1 makes every recent
	// partner count the same: during a partition each half shares many
	// rounds among itself and none across, and larger caps would let
	// those rounds outweigh the rounds shared before the cut.
	Cap int

	round uint64               // rounds recorded so far
	peers map[peer.ID][]uint64 // per peer, the (at most Cap) latest rounds it shared, oldest first
}

// Round records one round this node applied, with its members (self may
// be among them; it is not recorded).
func (p *Participation) Round(self peer.ID, members []peer.ID) {
	p.round++
	if p.peers == nil {
		p.peers = map[peer.ID][]uint64{}
	}
	for _, m := range members {
		if m == self {
			continue
		}
		rs := p.peers[m]
		if len(rs) > 0 && rs[len(rs)-1] == p.round {
			continue // listed twice in one round
		}
		if rs = append(rs, p.round); len(rs) > max(p.Cap, 1) {
			rs = rs[1:]
		}
		p.peers[m] = rs
	}
	for m, rs := range p.peers {
		if p.round-rs[len(rs)-1] >= p.Window {
			delete(p.peers, m) // bounded: only peers of the last Window rounds stay
		}
	}
}

// Weights is every peer's weight now (only peers that weigh something).
func (p *Participation) Weights() map[peer.ID]int {
	out := make(map[peer.ID]int, len(p.peers))
	for m, rs := range p.peers {
		w := 0
		for _, r := range rs {
			if p.round-r < p.Window {
				w++
			}
		}
		if w > 0 {
			out[m] = min(w, max(p.Cap, 1))
		}
	}
	return out
}
