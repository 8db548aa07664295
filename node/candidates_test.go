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
