package gossip

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

type testSlot struct {
	p     peer.ID
	start time.Time
	sent  int64
}

func (sl *testSlot) SlotState() (peer.ID, time.Time, int64) { return sl.p, sl.start, sl.sent }

func newTestPool() SlotPool[*testSlot] {
	return SlotPool[*testSlot]{
		Limits: SlotLimits{Total: 3, PerPeer: 2, Grace: 10 * time.Second, MinRate: 100},
		Held:   map[*testSlot]struct{}{},
		ByPeer: map[peer.ID]int{},
	}
}

func TestSlotPoolCapsPerPeerAndInAll(t *testing.T) {
	sp := newTestPool()
	t0 := time.Unix(0, 0)
	a, b := testutil.PeerID(1), testutil.PeerID(2)
	for range 2 {
		if v, ok := sp.Room(a, t0); !ok || v != nil {
			t.Fatalf("Room(a) = %v, %v with slots free", v, ok)
		}
		sp.Add(&testSlot{p: a, start: t0})
	}
	if _, ok := sp.Room(a, t0); ok {
		t.Fatal("a third slot for a peer capped at two")
	}
	sb := &testSlot{p: b, start: t0}
	sp.Add(sb)
	if _, ok := sp.Room(testutil.PeerID(3), t0); ok {
		t.Fatal("room in a full pool with every stream in its grace")
	}
	if !sp.Free(sb) || sp.Free(sb) {
		t.Fatal("Free must report true once, then false")
	}
	if _, held := sp.ByPeer[b]; held {
		t.Fatal("a peer with no slots left keeps a ByPeer entry")
	}
	if _, ok := sp.Room(testutil.PeerID(3), t0); !ok {
		t.Fatal("no room after a slot was freed")
	}
}

// A full pool gives a newcomer the slot of the stream furthest behind
// MinRate after its grace, and never one that keeps up.
func TestSlotPoolPreemptsFurthestBehind(t *testing.T) {
	sp := newTestPool()
	t0 := time.Unix(0, 0)
	var sl []*testSlot
	for i := range 3 {
		s := &testSlot{p: testutil.PeerID(10 + i), start: t0}
		sp.Add(s)
		sl = append(sl, s)
	}
	now := t0.Add(30 * time.Second) // 20 s past the grace: 2000 bytes due
	for _, s := range sl {
		s.sent = 2000
	}
	if _, ok := sp.Room(testutil.PeerID(1), now); ok {
		t.Fatal("a newcomer displaced streams that keep up")
	}
	sl[0].sent, sl[2].sent = 1500, 100
	v, ok := sp.Room(testutil.PeerID(1), now)
	if !ok || v != sl[2] {
		t.Fatalf("Room = %v, %v; want the stream furthest behind", v, ok)
	}
	if got := sp.Limits.Lag(t0, 0, t0.Add(5*time.Second)); got != 0 {
		t.Fatalf("lag %d in the grace period, want 0", got)
	}
}

func TestJoinFailuresStableOrder(t *testing.T) {
	if JoinFailures(nil) != nil {
		t.Fatal("no failures should join to nil")
	}
	a, b := testutil.PeerID(1), testutil.PeerID(2)
	if a > b {
		a, b = b, a
	}
	errA, errB := errors.New("refused"), errors.New("bad chunk")
	want := a.ShortString() + ": refused\n" + b.ShortString() + ": bad chunk"
	for range 20 { // map order varies between runs; the message must not
		err := JoinFailures(map[peer.ID]error{b: errB, a: errA})
		if err.Error() != want {
			t.Fatalf("JoinFailures = %q, want %q", err, want)
		}
		if !errors.Is(err, errA) || !errors.Is(err, errB) {
			t.Fatal("the peers' errors must stay reachable with errors.Is")
		}
	}
}
