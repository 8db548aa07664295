package allreduce

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

const protoPing = "/swarmtrain-test/ping"

// slowSites makes frames between peers of different sites take delay
// (the MemNetwork fault hook runs in the sender before delivery), and
// answers pings at every peer.
func slowSites(net *gossip.MemNetwork, ts []*gossip.MemTransport, site map[peer.ID]int, delay time.Duration) {
	net.SetFault(func(ev gossip.FrameEvent) gossip.FrameAction {
		if site[ev.From] != site[ev.To] {
			time.Sleep(delay) // the link's latency, not synchronisation
		}
		return gossip.Deliver
	})
	for _, tr := range ts {
		tr.Handle(protoPing, func(s gossip.Stream) {
			defer s.Close()
			if b, err := s.Recv(64); err == nil {
				_ = s.Send(b)
			}
		})
	}
}

// ping measures the round trip from t to p: the least of three.
func ping(t *testing.T, tr *gossip.MemTransport, p peer.ID) float64 {
	t.Helper()
	best := math.Inf(1)
	for range 3 {
		start := time.Now()
		s, err := tr.Open(context.Background(), p, protoPing)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(64); err != nil {
			t.Fatal(err)
		}
		s.Close()
		best = min(best, time.Since(start).Seconds())
	}
	return best
}

// Peers on three sites (links within a site fast, between sites 40 ms a
// frame each way) measure their round trips to each other; from the
// published table every peer lays out the same grid, whose lines of
// dimension 0 are the sites, averaged along more often than the lines
// across sites, and a change still reaches everyone in Local + Dims - 1
// rounds. The hash layout, given no costs, mixes the sites.
func TestMoshpitGridFromMeasuredLinks(t *testing.T) {
	for _, c := range []struct{ sites, per int }{{3, 3}, {4, 4}} {
		n := c.sites * c.per
		net, ts, ids := memPeers(n)
		site := map[peer.ID]int{}
		for i, p := range ids {
			site[p] = i % c.sites
		}
		slowSites(net, ts, site, 40*time.Millisecond)
		// Every peer measures every other; each pair's cost is the larger
		// of its two measurements, as every peer reads it from the table.
		rtt := make(map[[2]peer.ID]float64)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, tr := range ts {
			for j, p := range ids {
				if i == j {
					continue
				}
				wg.Go(func() {
					d := ping(t, tr, p)
					mu.Lock()
					rtt[[2]peer.ID{ids[i], p}] = d
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		cost := func(a, b peer.ID) float64 {
			return max(rtt[[2]peer.ID{a, b}], rtt[[2]peer.ID{b, a}])
		}
		g := NewMoshpitGridLinks("ab", ids, c.per, cost)
		if g.Dims != 2 || !slices.Equal(g.Sides, []int{c.per, c.per}) {
			t.Fatalf("%d peers in groups of %d: sides %v", n, c.per, g.Sides)
		}
		for _, grp := range g.Groups(0) {
			for _, p := range grp {
				if site[p] != site[grp[0]] {
					t.Fatalf("%d sites of %d: a dimension-0 group spans sites: %v", c.sites, c.per, grp)
				}
			}
		}
		if g.Local < 2 {
			t.Fatalf("sites averaged together every %d rounds: want more often than across sites", g.Local)
		}
		// Every peer, listing members in its own order, gets the same grid.
		rev := slices.Clone(ids)
		slices.Reverse(rev)
		if h := NewMoshpitGridLinks("ab", rev, c.per, cost); !slices.Equal(h.Order(), g.Order()) || h.Local != g.Local {
			t.Fatal("the member order changed the grid")
		}
		// A cycle's cost (each round waits on its slowest pair) against
		// the hash layout's, per round.
		plain := NewMoshpitGrid("ab", ids, c.per)
		perRound := func(g MoshpitGrid) float64 {
			var sum float64
			rounds := g.Local + g.Dims - 1
			for r := range uint64(rounds) {
				var worst float64
				for _, grp := range g.Groups(r) {
					for i, a := range grp {
						for _, b := range grp[i+1:] {
							worst = max(worst, cost(a, b))
						}
					}
				}
				sum += worst
			}
			return sum / float64(rounds)
		}
		mixed := false
		for _, grp := range plain.Groups(0) {
			mixed = mixed || slices.ContainsFunc(grp, func(p peer.ID) bool { return site[p] != site[grp[0]] })
		}
		if !mixed {
			t.Fatal("the hash layout happened to follow the sites: the comparison shows nothing")
		}
		lc, pc := perRound(g), perRound(plain)
		if lc >= pc {
			t.Fatalf("link layout: %.1f ms a round, hash layout %.1f ms", 1e3*lc, 1e3*pc)
		}
		if got, bound := roundsToReach(g), g.Local+g.Dims-1; got > bound {
			t.Fatalf("a change needs %d rounds to reach every peer, want at most %d", got, bound)
		}
		t.Logf("%d sites of %d: Local %d, slowest pair per round %.1f ms (hash layout %.1f ms), reach in %d rounds (hash layout %d)",
			c.sites, c.per, g.Local, 1e3*lc, 1e3*pc, roundsToReach(g), roundsToReach(plain))
	}
}

// roundsToReach is the most rounds a change at one peer needs to reach
// every peer, whichever peer and whichever round it starts at.
func roundsToReach(g MoshpitGrid) int {
	worst := 0
	period := uint64(max(g.Local, 1) + g.Dims - 1)
	for start := range period {
		for _, src := range g.order {
			has := map[peer.ID]bool{src: true}
			r := start
			for len(has) < len(g.order) {
				for _, grp := range g.Groups(r) {
					if slices.ContainsFunc(grp, func(p peer.ID) bool { return has[p] }) {
						for _, p := range grp {
							has[p] = true
						}
					}
				}
				r++
			}
			worst = max(worst, int(r-start))
		}
	}
	return worst
}

// Without costs, or with every cost unknown, the layout is the hash one.
func TestMoshpitGridLinksWithoutCosts(t *testing.T) {
	ids := peersN(12)
	plain := NewMoshpitGrid("ab", ids, 3)
	for _, cost := range []LinkCost{nil, func(a, b peer.ID) float64 { return math.NaN() }} {
		g := NewMoshpitGridLinks("ab", ids, 3, cost)
		if g.Local != 1 || g.Dims != plain.Dims {
			t.Fatalf("unknown costs: Local %d, %d dims", g.Local, g.Dims)
		}
		if cost == nil && !slices.Equal(g.Order(), plain.Order()) {
			t.Fatal("no costs changed the layout")
		}
	}
	if got := roundsToReach(plain); got != plain.Dims {
		t.Fatalf("hash layout of 12 in groups of 3: %d rounds to reach all, want %d", got, plain.Dims)
	}
}

// The most rounds a change needs to reach every peer, whichever peer
// and round it starts at: Dims = ⌈log_g N⌉ on a full grid; more on a
// partly filled one, whose peers near the end of the order sit alone on
// some lines and reach the rest only through the others (logged, with
// the bound the table in docs/BENCHMARKS.md reports).
func TestMoshpitReachByGridFill(t *testing.T) {
	for _, g := range []int{2, 3, 4, 8} {
		line := ""
		for _, n := range []int{5, 6, 9, 12, 16, 20, 27, 33, 64, 100} {
			if n <= g {
				continue
			}
			gr := NewMoshpitGrid("ab", peersN(n), g)
			r := roundsToReach(gr)
			if product(gr.Sides) == n && r != gr.Dims {
				t.Fatalf("full grid of %d in groups of %d (sides %v): %d rounds to reach all, want %d", n, g, gr.Sides, r, gr.Dims)
			}
			line += fmt.Sprintf(" N=%d %v: %d (%d)", n, gr.Sides, r, gr.Dims)
		}
		t.Logf("groups of %d, rounds to reach all (⌈log_g N⌉):%s", g, line)
	}
}
