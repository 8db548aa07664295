package node

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
)

func TestClientMode(t *testing.T) {
	for _, c := range []struct {
		r      network.Reachability
		forced bool
		client bool
	}{
		{network.ReachabilityUnknown, false, false}, // a LAN: AutoNAT never decides
		{network.ReachabilityPublic, false, false},
		{network.ReachabilityPrivate, false, true}, // behind a NAT, no flag needed
		{network.ReachabilityPublic, true, true},   // --client wins
		{network.ReachabilityUnknown, true, true},
	} {
		client, why := ClientMode(c.r, c.forced)
		if client != c.client || why == "" {
			t.Errorf("ClientMode(%v, forced %v) = %v %q, want client %v and a reason", c.r, c.forced, client, why, c.client)
		}
	}
}
