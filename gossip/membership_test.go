package gossip

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// A full membership ignores new keys instead of evicting established
// members, who keep being updated; once members expire, there is room.
func TestMembershipCapsMembers(t *testing.T) {
	m := NewMembership(testutil.PeerID(0), 10*time.Second)
	t0 := time.Unix(1000, 0)
	hb := func(p peer.ID, seq uint64) Heartbeat { return Heartbeat{Peer: p, Run: "ab", Seq: seq, Step: seq} }
	for i := 1; i <= maxMembership; i++ {
		if !m.ObserveHeartbeat(hb(testutil.PeerID(i), 1), t0) {
			t.Fatalf("member %d not added below the cap", i)
		}
	}
	for i := maxMembership + 1; i <= maxMembership+100; i++ {
		if m.ObserveHeartbeat(hb(testutil.PeerID(i), 1), t0.Add(time.Second)) {
			t.Fatalf("member %d added past the cap of %d", i, maxMembership)
		}
	}
	if n := len(m.Live(t0.Add(time.Second))); n != maxMembership {
		t.Fatalf("%d live members, want the cap %d", n, maxMembership)
	}
	established := testutil.PeerID(1)
	m.ObserveHeartbeat(hb(established, 2), t0.Add(2*time.Second))
	if got, ok := m.Get(established, t0.Add(2*time.Second)); !ok || got.Step != 2 {
		t.Fatalf("an established member was not updated at the cap: %+v, %v", got, ok)
	}
	// Everyone but the established member falls silent and expires.
	later := t0.Add(11 * time.Second)
	if !m.ObserveHeartbeat(hb(testutil.PeerID(maxMembership+1), 1), later) {
		t.Fatal("a new member was refused after the others expired")
	}
}
