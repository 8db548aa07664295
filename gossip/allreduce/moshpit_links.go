package allreduce

import (
	"math"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// LinkCost is what averaging between peers a and b costs, in seconds:
// measured latency plus the time a part takes at the slower uplink. It
// must be symmetric, and every peer must be given the same costs (what
// the peers published of their measurements, not each peer's own), so
// that every peer lays out the same grid. NaN or negative: unknown.
type LinkCost func(a, b peer.ID) float64

// maxLocalRounds caps MoshpitGrid.Local: more rounds in a row among the
// same near peers mix nothing new in, and delay the other dimensions.
const maxLocalRounds = 4

// NewMoshpitGridLinks lays peers out like NewMoshpitGrid, but fills the
// lines of dimension 0 with peers whose links to each other are cheap,
// and averages along them more often when that is cheaper than the
// other dimensions' lines: Local = ⌊mean cost of the other lines /
// mean cost of dimension 0's⌋, within 1..4. A change then reaches every
// peer within Local + Dims - 1 rounds instead of Dims.
//
// The layout is greedy and deterministic: in the hash order of
// NewMoshpitGrid, the first peer not yet placed opens a line and takes
// the Sides[0]-1 unplaced peers nearest to the line (least summed cost;
// ties in hash order). Pure: no clock, no I/O.
func NewMoshpitGridLinks(run string, peers []peer.ID, maxGroup int, cost LinkCost) MoshpitGrid {
	g := NewMoshpitGrid(run, peers, maxGroup)
	if cost == nil || g.Dims < 2 {
		return g
	}
	c := func(a, b peer.ID) float64 {
		x := cost(a, b)
		if math.IsNaN(x) || x < 0 {
			return math.Inf(1) // unknown: as far as can be
		}
		return x
	}
	placed := make([]bool, len(g.order))
	order := make([]peer.ID, 0, len(g.order))
	for first := range g.order {
		if placed[first] {
			continue
		}
		placed[first] = true
		line := []peer.ID{g.order[first]}
		for len(line) < g.Sides[0] {
			best, bestCost := -1, math.Inf(1)
			for j, p := range g.order {
				if placed[j] {
					continue
				}
				var sum float64
				for _, q := range line {
					sum += c(p, q)
				}
				if best < 0 || sum < bestCost {
					best, bestCost = j, sum
				}
			}
			if best < 0 {
				break
			}
			placed[best] = true
			line = append(line, g.order[best])
		}
		order = append(order, line...)
	}
	g.order = order
	g.Local = localRounds(g, c)
	return g
}

// localRounds compares the mean link cost within dimension 0's groups
// with the others'.
func localRounds(g MoshpitGrid, c LinkCost) int {
	mean := func(dim uint64) float64 {
		var sum float64
		var n int
		g1 := g
		g1.Local = 1
		for _, grp := range g1.Groups(dim) {
			for i, a := range grp {
				for _, b := range grp[i+1:] {
					sum += c(a, b)
					n++
				}
			}
		}
		if n == 0 {
			return math.NaN()
		}
		return sum / float64(n)
	}
	local := mean(0)
	var other []float64
	for d := 1; d < g.Dims; d++ {
		if m := mean(uint64(d)); !math.IsNaN(m) {
			other = append(other, m)
		}
	}
	if len(other) == 0 || math.IsNaN(local) || math.IsInf(local, 0) {
		return 1
	}
	var sum float64
	for _, m := range other {
		sum += m
	}
	ratio := sum / float64(len(other)) / max(local, 1e-6)
	if math.IsNaN(ratio) || ratio < 1 {
		return 1
	}
	return int(min(math.Floor(ratio), maxLocalRounds))
}

// Order is the grid's peers in grid order (a copy).
func (g MoshpitGrid) Order() []peer.ID { return slices.Clone(g.order) }
