package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// Gossip cannot make us keep more than maxKeptAddrs addresses for one
// peer, addresses of another peer, or entries for more than maxKeptPeers
// peers at a time; entries age out and make room.
func TestAddrBookCaps(t *testing.T) {
	b := newAddrBook()
	t0 := time.Unix(1000, 0)
	p, other := testutil.PeerID(1), testutil.PeerID(2)
	var join []string
	for i := range 40 {
		join = append(join, fmt.Sprintf("/ip4/10.0.0.%d/tcp/4001/p2p/%s", i+1, p))
	}
	join = append(join, join[0], "/ip4/10.9.9.9/tcp/1/p2p/"+other.String(), "garbage")
	addrs, ok := b.admit(p, join, t0)
	if !ok || len(addrs) != maxKeptAddrs {
		t.Fatalf("kept %d addresses (ok %v), want %d", len(addrs), ok, maxKeptAddrs)
	}
	addrs, _ = b.admit(p, []string{"/ip4/10.9.9.9/tcp/1/p2p/" + other.String()}, t0)
	if len(addrs) != 0 {
		t.Fatalf("kept another peer's address for p: %v", addrs)
	}

	for i := 2; i < maxKeptPeers+1; i++ { // p is in already
		if _, ok := b.admit(testutil.PeerID(i), nil, t0); !ok {
			t.Fatalf("peer %d turned away below the cap", i)
		}
	}
	if _, ok := b.admit(testutil.PeerID(maxKeptPeers+1), nil, t0.Add(time.Minute)); ok {
		t.Fatalf("a peer was kept past the cap of %d", maxKeptPeers)
	}
	if _, ok := b.admit(p, nil, t0.Add(time.Minute)); !ok {
		t.Fatal("a peer already kept was turned away at the cap")
	}
	if _, ok := b.admit(testutil.PeerID(maxKeptPeers+1), nil, t0.Add(keptAddrTTL+time.Second)); !ok {
		t.Fatal("a new peer was turned away after the others aged out")
	}
}
