package node

import (
	"strings"
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

func TestAnnounceValidated(t *testing.T) {
	for _, c := range []struct {
		addr, want string
	}{
		{"203.0.113.7:4001", "not a multiaddr"},
		{"/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA", "/p2p/"},
	} {
		cfg := DefaultConfig()
		cfg.Dir = t.TempDir()
		cfg.Announce = []string{c.addr}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--announce") {
			t.Errorf("--announce %q: got %v, want an error naming --announce and %q", c.addr, err, c.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Announce = []string{"/ip4/203.0.113.7/tcp/4001"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("a plain public address: %v", err)
	}
}
