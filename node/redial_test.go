package node

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// Lost peers are dialled again with growing pauses, connected ones are
// left alone, and peers unheard of for long or gone are forgotten.
func TestRedialer(t *testing.T) {
	r := newRedialer(time.Minute)
	a, b := peer.ID("a"), peer.ID("b")
	t0 := time.Unix(1000, 0)
	r.heard(a, t0)
	r.heard(b, t0)
	up := map[peer.ID]bool{b: true}
	connected := func(p peer.ID) bool { return up[p] }

	if got := r.due(t0, connected); len(got) != 1 || got[0] != a {
		t.Fatalf("due = %v, want [a]", got)
	}
	if got := r.due(t0, connected); len(got) != 0 {
		t.Fatalf("a peer being dialled was handed out again: %v", got)
	}
	// Failures back off 1 s, 2 s, 4 s … up to 8 s.
	now := t0
	for _, want := range []time.Duration{1, 2, 4, 8, 8} {
		r.dialed(a, false, now)
		if got := r.due(now.Add(want*time.Second-time.Millisecond), connected); len(got) != 0 {
			t.Fatalf("redialled before the %v backoff ended", want*time.Second)
		}
		now = now.Add(want * time.Second)
		r.heard(a, now)
		if got := r.due(now, connected); len(got) != 1 {
			t.Fatalf("not redialled after the %v backoff", want*time.Second)
		}
	}
	// Success resets the backoff.
	r.dialed(a, true, now)
	up[a] = true
	if got := r.due(now, connected); len(got) != 0 {
		t.Fatalf("connected peers redialled: %v", got)
	}
	up[a] = false
	if got := r.due(now, connected); len(got) != 1 {
		t.Fatal("a peer lost after a success was not redialled at once")
	}
	r.dialed(a, false, now)
	if got := r.due(now.Add(redialMin), connected); len(got) != 1 {
		t.Fatal("backoff did not restart from its minimum")
	}
	// Heard again after a silence: dialled at once, backoff or not.
	for range 3 {
		r.dialed(a, false, now)
	}
	if got := r.due(now.Add(time.Second), connected); len(got) != 0 {
		t.Fatal("redialled during the backoff")
	}
	r.heard(a, now.Add(time.Second)) // heard all along: keeps the backoff
	if got := r.due(now.Add(time.Second), connected); len(got) != 0 {
		t.Fatal("a peer heard all along skipped its backoff")
	}
	r.heard(a, now.Add(time.Second+silentFor+time.Millisecond))
	if got := r.due(now.Add(time.Second+silentFor+time.Millisecond), connected); len(got) != 1 {
		t.Fatal("a peer heard again after a silence was not dialled at once")
	}
	r.dialed(a, false, now)

	// An open connection silent for long is hung up on, once per silence.
	up[b] = false // b's connection is gone: nothing to hang up
	c := peer.ID("c")
	r.heard(c, now)
	up[c] = true
	if got := r.hangUp(now.Add(silentConn-time.Millisecond), connected); len(got) != 0 {
		t.Fatalf("hung up on %v before the silence was long", got)
	}
	if got := r.hangUp(now.Add(silentConn+time.Millisecond), connected); len(got) != 1 || got[0] != c {
		t.Fatalf("silent connection not hung up: %v", got)
	}
	if got := r.hangUp(now.Add(2*silentConn), connected); len(got) != 0 {
		t.Fatal("hung up twice in one silence")
	}
	r.heard(c, now.Add(2*silentConn))
	if got := r.hangUp(now.Add(3*silentConn+time.Millisecond), connected); len(got) != 1 {
		t.Fatal("a new silence was not hung up on")
	}

	// Gone or long unheard: forgotten.
	r.left(a)
	up[b] = false
	if got := r.due(now.Add(2*time.Minute), connected); len(got) != 0 {
		t.Fatalf("forgotten peers still dialled: %v", got)
	}
}

// The redialer remembers at most maxRedialPeers: new peers past the cap
// are not remembered (never dialled), the known ones stay, and peers
// forgotten after their silence make room.
func TestRedialerCapsPeers(t *testing.T) {
	r := newRedialer(time.Minute)
	t0 := time.Unix(1000, 0)
	for i := range maxRedialPeers {
		r.heard(testutil.PeerID(i), t0)
	}
	for i := maxRedialPeers; i < maxRedialPeers+100; i++ {
		r.heard(testutil.PeerID(i), t0.Add(time.Second))
	}
	down := func(peer.ID) bool { return false }
	due := r.due(t0.Add(time.Second), down)
	if len(due) != maxRedialPeers {
		t.Fatalf("%d peers due, want the cap %d", len(due), maxRedialPeers)
	}
	for _, p := range due {
		if p == testutil.PeerID(maxRedialPeers) {
			t.Fatal("a peer heard past the cap is being dialled")
		}
	}
	later := t0.Add(2 * time.Minute) // everyone above is forgotten
	late := testutil.PeerID(maxRedialPeers + 500)
	r.heard(late, later)
	if got := r.due(later, down); len(got) != 1 || got[0] != late {
		t.Fatalf("due = %v after the others were forgotten, want only the new peer", got)
	}
}
