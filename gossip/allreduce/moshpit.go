package allreduce

import (
	"crypto/sha256"
	"slices"
	"strconv"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Moshpit groups (Ryabinin et al., 2021) bound how many peers average
// together. Peers are laid out on a d-dimensional grid whose side is at
// most the maximum group size; round r groups the peers that share every
// coordinate except dimension r mod d. Averaging within those groups for
// d consecutive rounds gives every peer the exact mean of a full grid:
// each round averages out one dimension. On a partly filled grid the
// spread still shrinks every cycle of d rounds.
//
// The layout orders peers by a hash of (run, peer), not by join order, so
// every peer computes the same groups from the same member list and no
// peer can choose its neighbours.

// MoshpitGrid is the grid of one member list.
type MoshpitGrid struct {
	Dims int
	// Sides are the lengths of the dimensions, each at most the maximum
	// group, their product the fewest cells ≥ the peers that Dims
	// dimensions allow: 12 peers in groups of 3 are 3×2×2, not 3×3×3,
	// whose lines would mostly hold one peer and mix nothing.
	Sides []int
	// Local is how many rounds in a row average along dimension 0 before
	// each of the others takes one (1: plain rotation). A grid laid out
	// from measured links puts peers that are near each other on the
	// lines of dimension 0, which then average more often.
	Local int
	order []peer.ID // peers in grid order: index i has mixed-radix digits over Sides
}

// NewMoshpitGrid lays out peers for groups of at most maxGroup (≥ 2).
// It picks the fewest dimensions that fit, then the smallest sides.
func NewMoshpitGrid(run string, peers []peer.ID, maxGroup int) MoshpitGrid {
	maxGroup = max(maxGroup, 2)
	n := len(peers)
	dims := 1
	for pow(maxGroup, dims) < n {
		dims++
	}
	side := 1
	for pow(side, dims) < n {
		side++
	}
	// Shrink sides from the last while the grid still holds everyone:
	// a fuller grid leaves fewer peers alone on a line.
	sides := slices.Repeat([]int{side}, dims)
	for k := dims - 1; k >= 0; k-- {
		for sides[k] > 1 && product(sides)/sides[k]*(sides[k]-1) >= n {
			sides[k]--
		}
	}
	order := slices.Clone(peers)
	key := func(p peer.ID) string {
		h := sha256.Sum256([]byte(run + "\x00" + string(p)))
		return string(h[:])
	}
	slices.SortFunc(order, func(a, b peer.ID) int {
		ka, kb := key(a), key(b)
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
	return MoshpitGrid{Dims: dims, Sides: sides, Local: 1, order: order}
}

func product(xs []int) int {
	p := 1
	for _, x := range xs {
		p *= x
	}
	return p
}

// pow is a^b for small non-negative ints, saturating well above any swarm.
func pow(a, b int) int {
	r := 1
	for range b {
		r *= a
		if r > 1<<40 {
			return r
		}
	}
	return r
}

// Groups returns the groups of round r, each sorted by peer ID, ordered
// by their smallest member. Every peer is in exactly one group.
func (g MoshpitGrid) Groups(round uint64) [][]peer.ID {
	if len(g.order) == 0 {
		return nil
	}
	dim := g.Dim(round)
	stride := product(g.Sides[:dim])
	byKey := map[int][]peer.ID{}
	for i, p := range g.order {
		digit := (i / stride) % g.Sides[dim]
		key := i - digit*stride // every coordinate but dim
		byKey[key] = append(byKey[key], p)
	}
	out := make([][]peer.ID, 0, len(byKey))
	for _, grp := range byKey {
		slices.Sort(grp)
		out = append(out, grp)
	}
	slices.SortFunc(out, func(a, b []peer.ID) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
	return out
}

// Dim is the dimension round r averages along: Local rounds of
// dimension 0, then one of each other dimension, over and over.
func (g MoshpitGrid) Dim(round uint64) int {
	local := uint64(max(g.Local, 1))
	if g.Dims < 2 || local == 1 {
		return int(round % uint64(max(g.Dims, 1)))
	}
	i := round % (local + uint64(g.Dims) - 1)
	if i < local {
		return 0
	}
	return int(i - local + 1)
}

// GroupOf returns p's group in round r, or nil if p is not on the grid.
func (g MoshpitGrid) GroupOf(round uint64, p peer.ID) []peer.ID {
	for _, grp := range g.Groups(round) {
		if slices.Contains(grp, p) {
			return grp
		}
	}
	return nil
}

// MoshpitRound is the all-reduce round of p's group in Moshpit round r
// of step: every member of the group derives the same Round. Weights are
// equal, as Moshpit averages states, not sample-weighted gradients.
func MoshpitRound(run string, step, r uint64, group []peer.ID) Round {
	samples := make([]int, len(group))
	for i := range samples {
		samples[i] = 1
	}
	// The Moshpit round goes into the run string of the ID: rounds of one
	// step never share an ID.
	id := RoundID(run+"/moshpit/"+strconv.FormatUint(r, 10), step, 0, group, samples, nil)
	return Round{ID: id, Step: step, Members: group, Samples: samples}
}
