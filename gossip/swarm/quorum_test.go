package swarm

import (
	"maps"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// sybils are n fresh identities that all claim step with hash.
func sybils(n int, step uint64, hash string) []gossip.Member {
	var out []gossip.Member
	for i := range n {
		out = append(out, m(string(rune('s'))+string(rune('0'+i)), step, hash, 0))
	}
	return out
}

func weights(kv ...any) map[peer.ID]int {
	w := map[peer.ID]int{}
	for i := 0; i < len(kv); i += 2 {
		w[peer.ID(kv[i].(string))] = kv[i+1].(int)
	}
	return w
}

// The decisions that replace a state — Diverged (resync at our step),
// Behind and Donors (catch up), FinalConsensus — follow only a quorum of
// the participation weight: fresh identities weigh nothing, one peer
// cannot move a swarm of three, the halves of an even split converge by
// the tie-break, and a node with no history follows its bootstrap peers.
func TestWeightedDecisions(t *testing.T) {
	honest := []gossip.Member{m("a", 5, "x", 0), m("b", 5, "x", 0)}
	for _, tc := range []struct {
		name      string
		hash      string // ours, at step 5
		live      []gossip.Member
		weight    map[peer.ID]int
		bootstrap []peer.ID
		final     uint64
		diverged  string // the consensus Diverged reports when it says diverged, else ""
		behind    bool
		donors    []peer.ID
		top       uint64
	}{
		{name: "sybils at our step cannot outvote two participants", hash: "x",
			live: append(sybils(6, 5, "z"), honest...), weight: weights("a", 1, "b", 1)},
		{name: "sybils far ahead do not make us behind", hash: "x",
			live: append(sybils(6, 900, "z"), honest...), weight: weights("a", 1, "b", 1)},
		{name: "sybils cannot outvote one participant either", hash: "x",
			live: append(sybils(6, 5, "z"), honest[0]), weight: weights("a", 1)},
		{name: "one participant cannot move a swarm of three", hash: "x",
			live: []gossip.Member{m("a", 5, "z", 0), m("b", 5, "x", 0)}, weight: weights("a", 1, "b", 1)},
		{name: "one participant far ahead is no quorum", hash: "x",
			live: []gossip.Member{m("a", 900, "z", 0), m("b", 5, "x", 0), m("c", 5, "x", 0)}, weight: weights("a", 1, "b", 1, "c", 1)},
		{name: "one heavy participant is still one peer", hash: "x",
			live: []gossip.Member{m("a", 5, "z", 0), m("b", 5, "x", 0), m("c", 5, "y", 0)}, weight: weights("a", 9, "b", 1, "c", 1)},
		{name: "a participant's smaller hash cannot win a tie in a swarm of three", hash: "x",
			live: []gossip.Member{m("a", 5, "w", 0), m("b", 6, "x", 0)}, weight: weights("a", 1, "b", 1)},
		{name: "a heavy participant's smaller hash cannot win a tie either", hash: "x",
			live: []gossip.Member{m("a", 5, "w", 0), m("b", 6, "x", 0), m("c", 6, "x", 0)}, weight: weights("a", 9, "b", 1, "c", 1)},
		{name: "two participants holding half the weight make a quorum", hash: "x",
			live: []gossip.Member{m("a", 5, "w", 0), m("b", 5, "w", 0), m("c", 5, "x", 0)}, weight: weights("a", 2, "b", 1, "c", 1),
			diverged: "w", donors: ids("a", "b", "c"), top: 5},
		{name: "two light participants are outweighed", hash: "x",
			live: []gossip.Member{m("a", 5, "w", 0), m("b", 5, "w", 0), m("c", 5, "x", 0)}, weight: weights("a", 1, "b", 1, "c", 3)},
		{name: "participants busy syncing still count against one far-ahead claim", hash: "x",
			live: []gossip.Member{m("a", 5, "", 7), m("b", 5, "", 7), m("c", 900, "z", 0)}, weight: weights("a", 1, "b", 1, "c", 1)},
		{name: "a quorum ahead: behind, with donors", hash: "x",
			live: []gossip.Member{m("a", 7, "p", 0), m("b", 7, "p", 0), m("c", 5, "x", 0), m("s0", 900, "z", 0)}, weight: weights("a", 1, "b", 1, "c", 1),
			behind: true, donors: ids("a", "b", "c"), top: 7},
		{name: "two peers, the other ahead: no majority to wait for", hash: "x",
			live: []gossip.Member{m("a", 7, "p", 0)}, weight: weights("a", 1),
			behind: true, donors: ids("a"), top: 7},
		{name: "a claim beyond the final step is ignored, even alone", hash: "x", final: 100,
			live: []gossip.Member{m("a", 1000, "z", 0)}, weight: weights("a", 1)},
		{name: "3|3 healed, the side on the larger hash: adopts the smaller", hash: "y",
			live:     []gossip.Member{m("a2", 5, "y", 0), m("a3", 5, "y", 0), m("b1", 5, "x", 0), m("b2", 5, "x", 0), m("b3", 5, "x", 0)},
			weight:   weights("a2", 1, "a3", 1, "b1", 1, "b2", 1, "b3", 1),
			diverged: "x", donors: ids("b1", "b2", "b3", "a2", "a3"), top: 5},
		{name: "3|3 healed, the side on the smaller hash: keeps it", hash: "x",
			live:   []gossip.Member{m("b2", 5, "x", 0), m("b3", 5, "x", 0), m("a1", 5, "y", 0), m("a2", 5, "y", 0), m("a3", 5, "y", 0)},
			weight: weights("b2", 1, "b3", 1, "a1", 1, "a2", 1, "a3", 1)},
		{name: "3|3 healed, one side ahead: the other catches up", hash: "x",
			live:   []gossip.Member{m("b2", 5, "x", 0), m("b3", 5, "x", 0), m("a1", 9, "y", 0), m("a2", 9, "y", 0), m("a3", 9, "y", 0)},
			weight: weights("b2", 1, "b3", 1, "a1", 1, "a2", 1, "a3", 1),
			behind: true, donors: ids("a1", "a2", "a3", "b2", "b3"), top: 9},
		{name: "a joiner follows its bootstrap peer, not the sybils", hash: "x", bootstrap: ids("b"),
			live:   append(sybils(4, 900, "z"), m("b", 7, "p", 0), m("c", 7, "q", 0)),
			behind: true, donors: ids("b"), top: 7},
		{name: "a joiner's bootstrap peers disagree: the tie-break", hash: "x", bootstrap: ids("b", "c"),
			live:     append(sybils(4, 5, "z"), m("b", 5, "p", 0), m("c", 5, "q", 0)),
			diverged: "p", donors: ids("b", "c"), top: 5},
		{name: "no history and no bootstrap peer: nobody to follow", hash: "x", bootstrap: ids("gone"),
			live: append(sybils(4, 900, "z"), m("c", 7, "q", 0))},
		{name: "history wins over bootstrap", hash: "x", bootstrap: ids("b"),
			live: []gossip.Member{m("a", 5, "x", 0), m("b", 9, "p", 0)}, weight: weights("a", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := View{Self: self, Step: 5, Hash: tc.hash, Live: tc.live, Weight: tc.weight, Bootstrap: tc.bootstrap, Final: tc.final}
			c, div := v.Diverged()
			if (tc.diverged != "") != div || (div && c != tc.diverged) {
				t.Errorf("Diverged() = %q, %v; want %q", c, div, tc.diverged)
			}
			if got := v.Behind(5); got != tc.behind {
				t.Errorf("Behind(5) = %v, want %v", got, tc.behind)
			}
			donors, top, _ := v.Donors()
			if !slices.Equal(donors, tc.donors) || top != tc.top {
				t.Errorf("Donors() = %v, %d; want %v, %d", donors, top, tc.donors, tc.top)
			}
			if fc := v.FinalConsensus(5); fc == div {
				t.Errorf("FinalConsensus(5) = %v, but Diverged() = %v", fc, div)
			}
		})
	}
}

// A client follows the owners it averaged with: an owner that stepped on
// without two late clients is followed by them, though the two clients
// (at the old step) would outvote it. An owner keeps the usual rules.
func TestClientDefersToOwners(t *testing.T) {
	owner := m("o", 6, "p", 0)
	other := m("c", 5, "x", 0)
	other.Client = true
	v := View{Self: self, Step: 5, Hash: "x", Client: true, Live: []gossip.Member{owner, other}, Weight: weights("o", 1, "c", 1)}
	if !v.Behind(5) {
		t.Error("a client does not follow the one owner ahead of it")
	}
	if donors, top, _ := v.Donors(); !slices.Equal(donors, ids("o")) || top != 6 {
		t.Errorf("Donors() = %v, %d; want the owner at 6", donors, top)
	}
	if n := v.MinVouch(); n != 1 {
		t.Errorf("MinVouch() = %d, want 1 (one owner to follow)", n)
	}
	v.Client = false
	if v.Behind(5) {
		t.Error("an owner follows one peer ahead against a client that agrees with it")
	}
	// With only clients to vote (no owner averaged with us), the usual
	// rules hold.
	v.Client, v.Live = true, []gossip.Member{other}
	if v.Behind(5) {
		t.Error("a client followed a client at its own step")
	}
}

// Claims the policy does not follow are reported for the log: beyond the
// run's end, and far ahead of what a quorum has reached.
func TestIgnored(t *testing.T) {
	live := []gossip.Member{m("a", 6, "x", 0), m("b", 5, "x", 0), m("c", 1000, "z", 0), m("d", 101, "z", 0), m("e", 99, "", 99)}
	v := View{Self: self, Step: 5, Live: live, Weight: weights("a", 1, "b", 1, "c", 1), Final: 100}
	got := v.Ignored()
	want := []Claim{{"c", 1000, "beyond the run's last step"}, {"d", 101, "beyond the run's last step"}}
	if !slices.Equal(got, want) {
		t.Fatalf("Ignored() = %v, want %v", got, want)
	}
	v.Live = append(live, m("f", 50, "z", 0))
	if got := v.Ignored(); len(got) != 3 || got[2].Peer != "f" || got[2].Reason != "ahead of what the swarm's rounds show" {
		t.Errorf("Ignored() = %v: want f's step 50 reported as ahead of the swarm", got)
	}
}

// Participation counts the rounds each peer shared with us among our last
// Window, up to Cap; a peer outside the window is forgotten.
func TestParticipation(t *testing.T) {
	p := Participation{Window: 3, Cap: 2}
	if len(p.Weights()) != 0 {
		t.Fatal("weights before any round")
	}
	p.Round(self, ids("self", "a", "b"))
	p.Round(self, ids("self", "a", "a")) // listed twice: one round
	p.Round(self, ids("self", "a"))
	if got, want := p.Weights(), weights("a", 2, "b", 1); !maps.Equal(got, want) {
		t.Errorf("after 3 rounds: %v, want %v (a capped at 2, self never)", got, want)
	}
	p.Round(self, ids("self", "c"))
	if got, want := p.Weights(), weights("a", 2, "c", 1); !maps.Equal(got, want) {
		t.Errorf("after 4 rounds: %v, want %v (b's round left the window)", got, want)
	}
	p.Round(self, nil)
	p.Round(self, nil)
	if got, want := p.Weights(), weights("c", 1); !maps.Equal(got, want) {
		t.Errorf("after 6 rounds: %v, want %v", got, want)
	}
	if len(p.peers) != 1 {
		t.Errorf("%d peers remembered, want 1: forgotten peers must go", len(p.peers))
	}
}

// Above the Moshpit cap no state has a quorum (replicas differ by
// design), so the final step takes the smallest hash a voter holds:
// hashes only shrink and the swarm converges on one along its partner
// graph. A fresh identity's smaller hash still does not count.
func TestMoshpitFinalConsensus(t *testing.T) {
	live := []gossip.Member{m("a", 9, "q", 0), m("b", 9, "p", 0), m("c", 9, "r", 0), m("s0", 9, "a", 0)}
	v := View{Run: "r", Self: self, Step: 9, Hash: "x", Live: live, MaxGroup: 2, Weight: weights("a", 1, "b", 1, "c", 1)}
	if v.Moshpit() == nil {
		t.Fatal("five trainers with a cap of two: want Moshpit")
	}
	if got := v.Consensus(9, v.Hash); got != "p" {
		t.Errorf("Consensus = %q, want p: the smallest a voter holds, not the sybil's a", got)
	}
	if v.FinalConsensus(9) {
		t.Error("our x is not the final consensus")
	}
	if got := v.MinVouch(); got != 1 {
		t.Errorf("MinVouch() = %d, want 1 above the cap", got)
	}
	v.Hash = "o"
	if !v.FinalConsensus(9) {
		t.Error("our o is the smallest: it stands")
	}
	// Ours stands, but the others still hold theirs: settle waits.
	if !v.FinalSplit(9) {
		t.Error("live peers at the final step hold other states: want a split")
	}
	for i := range v.Live {
		v.Live[i].Hash = "o"
	}
	v.Live[0].Step = 8 // not there yet: Pending's business, not a split
	v.Live[0].Hash = "q"
	if v.FinalSplit(9) {
		t.Error("everyone at the final step holds ours: no split")
	}
	v.MaxGroup = 0
	v.Live[1].Hash = "p"
	if v.FinalSplit(9) {
		t.Error("below the cap the quorum decides: no split")
	}
}

// After a split, two clients that averaged alone hold a state no owner
// holds. The owner keeps its own (the clients' word echoes no owner) and
// the clients defer to it: one side gives way. When owners counted the
// clients' votes, the owner resynced to the clients' state while they
// resynced to its own, and nobody kept a state to download
// (TestHomeNodesPunch, 2 owners and 2 clients).
func TestOwnersAndClientsAgreeWhoGivesWay(t *testing.T) {
	owner, c1, c2 := m("o", 7, "a", 0), client(m("c1", 7, "b", 0)), client(m("c2", 7, "b", 0))
	ov := View{Self: "o", Step: 7, Hash: "a", Live: []gossip.Member{c1, c2}, Weight: weights("c1", 1, "c2", 1)}
	if c, diverged := ov.Diverged(); diverged {
		t.Errorf("the owner follows the clients' state %q, which no owner holds", c)
	}
	cv := View{Self: "c1", Step: 7, Hash: "b", Client: true, Live: []gossip.Member{owner, c2}, Weight: weights("o", 1, "c2", 1)}
	if c, diverged := cv.Diverged(); !diverged || c != "a" {
		t.Errorf("a client's consensus = %q (diverged %v), want the owner's %q", c, diverged, "a")
	}
	// A client's state that an owner holds too still counts for the owner.
	c1.Hash, c2.Hash = "a", "a"
	ov = View{Self: "o2", Step: 7, Hash: "z", Live: []gossip.Member{owner, c1, c2}, Weight: weights("o", 1, "c1", 1, "c2", 1)}
	if c, diverged := ov.Diverged(); !diverged || c != "a" {
		t.Errorf("an owner outvoted by an owner and its clients: consensus %q (diverged %v), want %q", c, diverged, "a")
	}
}
