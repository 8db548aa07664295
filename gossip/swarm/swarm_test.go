package swarm

import (
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/allreduce"
)

const self = peer.ID("self")

// m is a live member at step with hash; syncTo > 0 makes it a peer
// downloading that step.
func m(p string, step uint64, hash string, syncTo uint64) gossip.Member {
	return gossip.Member{Heartbeat: gossip.Heartbeat{Peer: peer.ID(p), Step: step, Hash: hash, Syncing: syncTo > 0, SyncTo: syncTo}}
}

// all gives every live member a weight of one: they all averaged with us.
func all(live []gossip.Member) map[peer.ID]int {
	w := map[peer.ID]int{}
	for _, m := range live {
		w[m.Peer] = 1
	}
	return w
}

// client marks m as a peer that cannot be dialled.
func client(m gossip.Member) gossip.Member { m.Client = true; return m }

func ids(ps ...string) []peer.ID {
	out := make([]peer.ID, len(ps))
	for i, p := range ps {
		out[i] = peer.ID(p)
	}
	return out
}

func TestCandidates(t *testing.T) {
	live := []gossip.Member{m("a", 5, "x", 0), m("b", 5, "x", 0), m("c", 5, "x", 0), m("d", 2, "", 5)}
	for _, tc := range []struct {
		name   string
		last   []peer.ID
		live   []gossip.Member
		want   []peer.ID
		client bool // self is a client
	}{
		{"a member: last round's live members, in its order", []peer.ID{self, "a", "gone", "b"}, live, []peer.ID{self, "a", "b"}, false},
		{"a joiner holds the list without itself", ids("b", "a"), live, ids("b", "a"), false},
		{"a syncing member of the last round does not assemble", ids("a", "d"), live, ids("a"), false},
		{"first step: every live trainer, sorted", nil, live, ids("a", "b", "c", "self"), false},
		{"first step alone", nil, nil, ids("self"), false},
		{"the whole last group gone: back to the live trainers", ids("gone"), live[:1], ids("a", "self"), false},
		{"duplicates in the list count once", ids("a", "a", "self"), live, ids("a", "self"), false},
		{"first step: clients do not assemble", nil, []gossip.Member{client(live[0]), live[1], client(live[2])}, ids("b", "self"), false},
		{"first step: nor does self as a client", nil, []gossip.Member{client(live[0]), live[1]}, ids("b"), true},
		{"first step, only clients: they must", nil, []gossip.Member{client(live[0])}, ids("a", "self"), true},
		{"a client of the last group does not assemble", ids("a", "b", "c"), []gossip.Member{live[0], client(live[1]), live[2]}, ids("a", "c"), false},
		{"nor does self, turned client since", []peer.ID{self, "a", "b"}, live, ids("a", "b"), true},
		{"a lone client's last group, owners live: the owners", []peer.ID{self}, live, ids("a", "b", "c"), true},
		{"a last group of clients, no owner live: they must", []peer.ID{self, "a"}, []gossip.Member{client(live[0])}, []peer.ID{self, "a"}, true},
		{"a last group of clients, the owners syncing: ask the owners, not each other", []peer.ID{self, "a"}, []gossip.Member{client(live[0]), live[3]}, ids("d"), true},
		{"first step, a client, the owners syncing: the owners", nil, []gossip.Member{client(live[0]), live[3]}, ids("d"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := View{Self: self, Step: 5, Live: tc.live, LastGroup: tc.last, Client: tc.client}
			if got := v.Candidates(); !slices.Equal(got, tc.want) {
				t.Errorf("Candidates() = %v, want %v", got, tc.want)
			}
		})
	}
}

// Two members whose gossip views differ (one already sees a newcomer,
// one does not; one still shows a peer that left) pick the same
// assembler, because candidates come from the last group, not the view.
// Gossip-view candidates split such a swarm into two groups at one step.
func TestStaleViewsPickOneAssembler(t *testing.T) {
	last := ids("a", "b", "c")
	fresh := View{Self: "a", Step: 7, LastGroup: last, Live: []gossip.Member{m("b", 7, "x", 0), m("c", 7, "x", 0), m("new", 7, "x", 0)}}
	stale := View{Self: "b", Step: 7, LastGroup: last, Live: []gossip.Member{m("a", 6, "x", 0), m("c", 6, "x", 0)}}
	ca, cb := fresh.Candidates(), stale.Candidates()
	if !slices.Equal(ca, cb) {
		t.Fatalf("candidates differ: %v and %v", ca, cb)
	}
	if allreduce.Assembler(7, ca) != allreduce.Assembler(7, cb) {
		t.Fatal("two assemblers for one step")
	}
	// The newcomer is still waited for by the assembler that sees it.
	if !slices.Contains(fresh.Expected(7), "new") {
		t.Errorf("Expected(7) = %v lacks the newcomer", fresh.Expected(7))
	}
}

func TestExpected(t *testing.T) {
	live := []gossip.Member{
		m("a", 5, "x", 0), m("b", 5, "x", 0),
		m("c", 5, "x", 0), // a newcomer at step 5
		m("f", 4, "x", 0), // finishing step 4
		m("g", 3, "x", 0), // too far back
		m("d", 2, "", 5),  // downloading step 5
		m("e", 2, "", 7),  // downloading another step
		m("h", 6, "y", 0), // ahead: not waited for
	}
	for _, tc := range []struct {
		name string
		last []peer.ID
		want []peer.ID
	}{
		{"member", []peer.ID{self, "a", "gone", "b"}, ids("self", "a", "b", "c", "f", "d")},
		{"joiner waits for itself too", ids("a", "b"), ids("a", "b", "self", "c", "f", "d")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := View{Self: self, Step: 5, Live: live, LastGroup: tc.last}
			if got := v.Expected(5); !slices.Equal(got, tc.want) {
				t.Errorf("Expected(5) = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBehind(t *testing.T) {
	for _, tc := range []struct {
		name     string
		live     []gossip.Member
		maxGroup int
		step     uint64
		want     bool
	}{
		{"alone", nil, 0, 5, false},
		{"same step", []gossip.Member{m("a", 5, "x", 0)}, 0, 5, false},
		{"a peer one step ahead", []gossip.Member{m("a", 6, "x", 0)}, 0, 5, true},
		{"a syncing peer ahead does not count", []gossip.Member{m("a", 9, "", 9)}, 0, 5, false},
		{"moshpit: a round ahead is normal", []gossip.Member{m("a", 6, "x", 0), m("b", 5, "x", 0), m("c", 5, "x", 0)}, 2, 5, false},
		{"moshpit: beyond the lag", []gossip.Member{m("a", 5+MoshpitLag+1, "x", 0), m("b", 5+MoshpitLag+1, "x", 0), m("c", 5, "x", 0)}, 2, 5, true},
		{"moshpit: one peer beyond the lag is no quorum", []gossip.Member{m("a", 5+MoshpitLag+1, "x", 0), m("b", 5, "x", 0), m("c", 5, "x", 0)}, 2, 5, false},
		{"at the cap: exact, no lag", []gossip.Member{m("a", 6, "x", 0)}, 2, 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := View{Self: self, Step: tc.step, Live: tc.live, MaxGroup: tc.maxGroup, Weight: all(tc.live)}
			if got := v.Behind(tc.step); got != tc.want {
				t.Errorf("Behind(%d) = %v, want %v", tc.step, got, tc.want)
			}
		})
	}
}

func TestDiverged(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hash     string
		live     []gossip.Member
		maxGroup int
		want     string
		diverged bool
	}{
		{"alone", "x", nil, 0, "x", false},
		{"outvoted", "y", []gossip.Member{m("a", 5, "x", 0), m("b", 5, "x", 0)}, 0, "x", true},
		{"majority", "x", []gossip.Member{m("a", 5, "x", 0), m("b", 5, "y", 0)}, 0, "x", false},
		{"tie: the smallest hash wins on both sides", "y", []gossip.Member{m("a", 5, "x", 0)}, 0, "x", true},
		{"tie seen from the winner", "x", []gossip.Member{m("a", 5, "y", 0)}, 0, "x", false},
		{"peers at other steps do not vote", "y", []gossip.Member{m("a", 6, "x", 0), m("b", 4, "x", 0)}, 0, "y", false},
		{"syncing peers do not vote", "y", []gossip.Member{m("a", 5, "x", 5), m("b", 5, "x", 5)}, 0, "y", false},
		{"moshpit: replicas differ by design", "y", []gossip.Member{m("a", 5, "x", 0), m("b", 5, "x", 0), m("c", 5, "x", 0)}, 2, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := View{Self: self, Step: 5, Hash: tc.hash, Live: tc.live, MaxGroup: tc.maxGroup, Weight: all(tc.live)}
			got, div := v.Diverged()
			if got != tc.want || div != tc.diverged {
				t.Errorf("Diverged() = %q, %v; want %q, %v", got, div, tc.want, tc.diverged)
			}
		})
	}
}

func TestDonors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		step   uint64
		hash   string
		live   []gossip.Member
		donors []peer.ID
		top    uint64
		want   string
	}{
		{"nobody ahead", 5, "x", []gossip.Member{m("a", 5, "x", 0), m("b", 4, "z", 0)}, nil, 0, ""},
		{"ahead: newest first, then the consensus there", 5, "x",
			[]gossip.Member{m("a", 6, "y", 0), m("b", 7, "q", 0), m("c", 7, "p", 0), m("d", 7, "p", 0), m("e", 7, "p", 0), m("g", 7, "p", 0), m("f", 5, "x", 0)},
			ids("c", "d", "e", "g", "b", "a", "f"), 7, "p"},
		{"ahead, no quorum on a hash there yet", 5, "x",
			[]gossip.Member{m("a", 6, "y", 0), m("b", 7, "q", 0), m("c", 7, "p", 0), m("d", 7, "p", 0), m("e", 5, "x", 0)},
			ids("b", "c", "d", "a", "e"), 7, ""},
		{"same step, outvoted: the winners first", 5, "z",
			[]gossip.Member{m("a", 5, "x", 0), m("b", 5, "x", 0), m("c", 5, "z", 0)},
			ids("a", "b", "c"), 5, "x"},
		{"syncing, hashless and stale peers never donate", 5, "x",
			[]gossip.Member{m("a", 9, "y", 9), m("b", 8, "", 0), m("c", 4, "w", 0), m("d", 6, "v", 0), m("e", 6, "v", 0)},
			ids("d", "e"), 6, ""},
		{"clients vote but donate only when nobody else can", 5, "x",
			[]gossip.Member{client(m("a", 7, "p", 0)), m("b", 7, "p", 0), m("c", 5, "x", 0)},
			ids("b", "c"), 7, "p"},
		{"only clients ahead, at a state no owner holds: an owner keeps its own", 5, "x",
			[]gossip.Member{client(m("a", 7, "p", 0)), client(m("b", 7, "p", 0))},
			nil, 0, ""},
		{"clients echoing an owner that is syncing now: no owner holds their state", 5, "x",
			[]gossip.Member{client(m("a", 7, "p", 0)), client(m("b", 7, "p", 0)), m("c", 6, "", 8)},
			nil, 0, ""},
		{"one peer ahead of a swarm of three is no quorum", 5, "x",
			[]gossip.Member{m("a", 9, "y", 0), m("b", 5, "x", 0)},
			nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := View{Self: self, Step: tc.step, Hash: tc.hash, Live: tc.live, Weight: all(tc.live)}
			donors, top, want := v.Donors()
			if !slices.Equal(donors, tc.donors) || top != tc.top || want != tc.want {
				t.Errorf("Donors() = %v, %d, %q; want %v, %d, %q", donors, top, want, tc.donors, tc.top, tc.want)
			}
		})
	}
}

func TestFinal(t *testing.T) {
	live := []gossip.Member{m("a", 10, "x", 0), m("c", 10, "x", 0), m("b", 9, "x", 0)}
	v := View{Self: self, Step: 10, Hash: "y", Live: live, Weight: all(live)}
	if v.FinalConsensus(10) {
		t.Error("two of four at the final step hold x: a quorum, and the tie goes to the smaller hash x, not ours")
	}
	if !v.Pending(10) {
		t.Error("b has not finished")
	}
	v.Live = v.Live[:2]
	if v.Pending(10) {
		t.Error("everyone finished")
	}
	v.Live = v.Live[:1]
	v.Hash = "w"
	if !v.FinalConsensus(10) {
		t.Error("w ties x and is smaller: ours wins")
	}
	live = []gossip.Member{m("a", 3, "x", 0), m("b", 9, "", 9)}
	if got := (View{Live: live, Weight: all(live)}).NewestStep(); got != 3 {
		t.Errorf("NewestStep() = %d, want 3 (a syncing peer does not count)", got)
	}
}

// Moshpit: above the cap a node averages in its grid line, never with
// more than MaxGroup peers, with a partner that changes from step to
// step; at or below the cap it is one exact group.
func TestMoshpit(t *testing.T) {
	live := []gossip.Member{m("a", 5, "x", 0), m("b", 5, "x", 0), m("c", 6, "x", 0)}
	v := View{Run: "r", Self: self, Live: live[:1], MaxGroup: 2}
	if v.Moshpit() != nil {
		t.Fatal("two peers with a cap of two: want one exact group")
	}
	v.Live = append(live, m("s", 5, "", 5)) // a syncing peer is no grid member
	grid := v.Moshpit()
	if !slices.Equal(grid, ids("a", "b", "c", "self")) {
		t.Fatalf("grid %v: want the four trainers, sorted", grid)
	}
	partners := map[peer.ID]bool{}
	for step := uint64(5); step < 7; step++ {
		g := v.Expected(step)
		if len(g) != 2 || !slices.Contains(g, self) {
			t.Fatalf("step %d: group %v, want self and one partner", step, g)
		}
		for _, p := range g {
			partners[p] = true
		}
	}
	if len(partners) != 3 {
		t.Fatalf("partners over two steps %v: the group did not rotate", partners)
	}
}

// With --min-group equal to --max-group a Moshpit grid line can hold
// fewer peers than the minimum (5 peers, cap 4: lines of at most 3). The
// round then asks for the line's size, or those peers never average again.
func TestMoshpitLineSmallerThanMinGroup(t *testing.T) {
	v := View{Run: "r", Self: self, MinGroup: 4, MaxGroup: 4,
		Live: []gossip.Member{m("a", 3, "", 0), m("b", 3, "", 0), m("c", 3, "", 0), m("d", 3, "", 0)}}
	for step := uint64(3); step < 5; step++ {
		g := v.Expected(step)
		if need := v.MinGroupAt(step); len(g) > 3 || need != len(g) {
			t.Fatalf("step %d: group of %d, minimum %d", step, len(g), need)
		}
	}
	v.Live = v.Live[:3] // four peers: one exact group, the run's minimum
	if need := v.MinGroupAt(3); need != 4 {
		t.Errorf("at the cap: minimum %d, want the run's 4", need)
	}
}

// A joiner that has averaged with nobody yet never steps alone; once it
// has, or with no bootstrap peer (the swarm's first node), the run's
// minimum holds.
func TestJoinerNeverStepsAlone(t *testing.T) {
	v := View{Run: "r", Self: self, MinGroup: 1, Bootstrap: ids("a")}
	if need := v.MinGroupAt(3); need != 2 {
		t.Errorf("a joiner that averaged with nobody: minimum %d, want 2", need)
	}
	v.Weight = map[peer.ID]int{"b": 1}
	if need := v.MinGroupAt(3); need != 1 {
		t.Errorf("a joiner that averaged with b: minimum %d, want the run's 1", need)
	}
	v.Weight, v.Bootstrap = nil, nil
	if need := v.MinGroupAt(3); need != 1 {
		t.Errorf("the first node: minimum %d, want the run's 1", need)
	}
	v.Bootstrap, v.MinGroup = ids("a"), 3
	if need := v.MinGroupAt(3); need != 3 {
		t.Errorf("a joiner in a run of minimum 3: %d, want 3", need)
	}
}

// A round of fewer than half the voters would fork the swarm: at
// --min-group 1 among four that averaged together, the minimum is two;
// among three, two; between two, one (either may go on alone, and the
// tie-break heals them); alone, one. Voters syncing still count.
func TestMinGroupIsHalfTheVoters(t *testing.T) {
	four := []gossip.Member{m("a", 5, "x", 0), m("b", 5, "x", 0), m("c", 2, "", 5)}
	for _, tc := range []struct {
		name string
		live []gossip.Member
		want int
	}{
		{"four, one syncing", four, 2},
		{"three", four[:2], 2},
		{"two", four[:1], 1},
		{"alone", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := View{Run: "r", Self: self, Step: 5, MinGroup: 1, Live: tc.live, Weight: all(tc.live)}
			if got := v.MinGroupAt(5); got != tc.want {
				t.Errorf("MinGroupAt(5) = %d, want %d", got, tc.want)
			}
		})
	}
	// Peers that never averaged with us weigh nothing: a newcomer's
	// crowd does not hold a member back.
	v := View{Run: "r", Self: self, Step: 5, MinGroup: 1, Live: four, Weight: map[peer.ID]int{"a": 1}}
	if got := v.MinGroupAt(5); got != 1 {
		t.Errorf("one voter of three live peers: MinGroupAt(5) = %d, want 1", got)
	}
	// The run's own minimum still holds when larger.
	v = View{Run: "r", Self: self, Step: 5, MinGroup: 3, Live: four, Weight: all(four)}
	if got := v.MinGroupAt(5); got != 3 {
		t.Errorf("--min-group 3: MinGroupAt(5) = %d, want 3", got)
	}
}

// A member of the last round that stepped on without a quorum (the
// others never saw its round) is no candidate: it would answer every
// join "behind". Once a quorum is past our step it is followed instead.
func TestForkedMemberIsNoCandidate(t *testing.T) {
	live := []gossip.Member{m("a", 9, "y", 0), m("b", 5, "x", 0), m("c", 5, "x", 0)}
	v := View{Self: self, Step: 5, Hash: "x", Live: live, LastGroup: ids("a", "b", "c", "self"), Weight: all(live)}
	if got, want := v.Candidates(), ids("b", "c", "self"); !slices.Equal(got, want) {
		t.Fatalf("Candidates() = %v, want %v", got, want)
	}
	if slices.Contains(v.Expected(5), "a") {
		t.Errorf("Expected(5) = %v waits for the forked member", v.Expected(5))
	}
	// One step ahead is the same: its round was not ours.
	v.Live[0].Step = 6
	if slices.Contains(v.Candidates(), "a") {
		t.Errorf("a at step 6 alone: Candidates() = %v", v.Candidates())
	}
	// b went ahead with it: half the weight, a quorum. We are behind.
	v.Live[1].Step = 6
	if !v.Behind(5) {
		t.Fatal("half the voters at step 6: not behind")
	}
	if got := v.Candidates(); !slices.Contains(got, "a") {
		t.Errorf("behind a quorum: Candidates() = %v leaves a out", got)
	}
}
