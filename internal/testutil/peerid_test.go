package testutil

import "testing"

func TestPeerIDsDistinct(t *testing.T) {
	if PeerID(1) == PeerID(2) || PeerID(1) != PeerID(1) {
		t.Fatal("PeerID is not a deterministic injection")
	}
}
