package node

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// Who may assemble a round and whom its assembler waits for: members of
// the last round pick the assembler; newcomers at the step and peers
// downloading exactly that step are waited for but never assemble; a
// joiner that holds the last round's list leaves itself out of the pick.
func TestCandidatesAndExpected(t *testing.T) {
	n, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer n.host.Close()
	defer n.unlock()
	self := n.host.ID()
	a, b, c, d, e, gone := peer.ID("a"), peer.ID("b"), peer.ID("c"), peer.ID("d"), peer.ID("e"), peer.ID("gone")
	now := time.Now()
	hb := func(p peer.ID, step uint64, syncing bool, syncTo uint64) {
		n.view.ObserveHeartbeat(gossip.Heartbeat{Peer: p, Seq: 1, Step: step, Syncing: syncing, SyncTo: syncTo}, now)
	}
	hb(a, 5, false, 0)
	hb(b, 5, false, 0)
	hb(c, 5, false, 0) // a newcomer at step 5
	hb(d, 2, true, 5)  // downloading step 5
	hb(e, 2, true, 7)  // downloading another step

	n.lastGroup = []peer.ID{self, a, gone, b}
	if got, want := n.candidates(), []peer.ID{self, a, b}; !slices.Equal(got, want) {
		t.Errorf("member: candidates %v, want %v", got, want)
	}
	exp := n.expected(5)
	for _, p := range []peer.ID{self, a, b, c, d} {
		if !slices.Contains(exp, p) {
			t.Errorf("expected(5) = %v lacks %s", exp, p)
		}
	}
	if slices.Contains(exp, e) || slices.Contains(exp, gone) {
		t.Errorf("expected(5) = %v waits for a peer it should not", exp)
	}

	// A joiner holds the list that came with the state, without itself.
	n.lastGroup = []peer.ID{a, b}
	if got, want := n.candidates(), []peer.ID{a, b}; !slices.Equal(got, want) {
		t.Errorf("joiner: candidates %v, want %v", got, want)
	}
	if !slices.Contains(n.expected(5), self) {
		t.Error("a joiner's own assembly does not wait for itself")
	}

	// The first step: no last round, every live trainer counts.
	n.lastGroup = nil
	got := n.candidates()
	slices.Sort(got)
	want := []peer.ID{self, a, b, c}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("first step: candidates %v, want %v", got, want)
	}
}

// Above the run's maximum group, a node averages in its Moshpit group:
// never more than MaxGroup peers, a partner that changes from step to
// step, a lag of a round that does not count as being behind, and no
// per-step hash consensus. At or below the cap it is one exact group.
func TestMoshpitGroups(t *testing.T) {
	cfg := testConfig(t)
	cfg.Run.Averaging.MaxGroup = 2
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.host.Close()
	defer n.unlock()
	self := n.host.ID()
	now := time.Now()
	var seq uint64
	hb := func(p peer.ID, step uint64, hash string) {
		seq++
		n.view.ObserveHeartbeat(gossip.Heartbeat{Peer: p, Seq: seq, Step: step, Hash: hash}, now)
	}
	hb("a", 5, "x")
	if n.moshpit() != nil {
		t.Fatal("two peers with a cap of two: want one exact group")
	}
	hb("b", 5, "x")
	hb("c", 6, "x") // a round ahead
	swarm := n.moshpit()
	if len(swarm) != 4 || !slices.Contains(swarm, self) || !slices.IsSorted(swarm) {
		t.Fatalf("swarm %v: want all four peers, sorted", swarm)
	}
	partners := map[peer.ID]bool{}
	for step := uint64(5); step < 7; step++ {
		g := n.expected(step)
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
	if n.behind(5) {
		t.Error("a peer one round ahead counts as behind in Moshpit mode")
	}
	hb("c", 5+moshpitLag+1, "x")
	if !n.behind(5) {
		t.Error("a peer far ahead does not count as behind")
	}
	n.mu.Lock()
	n.step = 5
	n.mu.Unlock()
	n.checkAgreement() // every peer but us votes "x"
	if n.resync.Load() {
		t.Error("hash consensus forced a resync in Moshpit mode")
	}
}

// With --min-group equal to --max-group, a Moshpit grid line can hold
// fewer peers than the minimum (5 peers, cap 4: lines of at most 3). The
// matchmaker then asks for the line's size, not the run's minimum, or
// those peers would never average again.
func TestMoshpitMinGroupFitsTheGrid(t *testing.T) {
	cfg := testConfig(t)
	cfg.Run.Averaging.MaxGroup, cfg.Run.Averaging.MinGroup = 4, 4
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.host.Close()
	defer n.unlock()
	for i, p := range []peer.ID{"a", "b", "c", "d"} {
		n.view.ObserveHeartbeat(gossip.Heartbeat{Peer: p, Seq: uint64(i + 1), Step: 3}, time.Now())
	}
	v := matchView{n}
	for step := uint64(3); step < 5; step++ {
		g := n.expected(step)
		if need := v.MinGroup(step); need != min(4, len(g)) || len(g) > 3 {
			t.Fatalf("step %d: group of %d, minimum %d", step, len(g), need)
		}
	}
}
