package p2p

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
)

func TestReachConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		edit  func(*Config)
	}{
		{"RelayDuration", func(c *Config) { c.RelayDuration = 0 }},
		{"RelayData", func(c *Config) { c.RelayData = -1 }},
		{"RelayCircuits", func(c *Config) { c.RelayCircuits = 0 }},
		{"RelayReservations", func(c *Config) { c.RelayReservations = 0 }},
		{"Relays", func(c *Config) { c.Relays = 0 }},
		{"RelayInterval", func(c *Config) { c.RelayInterval = 0 }},
		{"Announce[1]", func(c *Config) { c.Announce = []string{"/ip4/1.2.3.4/tcp/1", "1.2.3.4:5"} }},
	} {
		cfg := DefaultConfig()
		cfg.Dir = t.TempDir()
		tc.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want an error naming it", tc.field, err)
		}
	}
	// Off, their limits do not matter.
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.RelayService, cfg.AutoRelay = false, false
	cfg.RelayData, cfg.Relays = 0, 0
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

// A fresh loopback host knows nothing of its reachability yet, has no
// public address, mapped no port and punched no hole; a direct
// connection is not relayed.
func TestReachDefaults(t *testing.T) {
	a, b := newTestHost(t, ""), newTestHost(t, "")
	if r := a.Reachability(); r != network.ReachabilityUnknown {
		t.Errorf("Reachability %v, want Unknown", r)
	}
	if addrs := a.ObservedAddrs(); len(addrs) != 0 {
		t.Errorf("ObservedAddrs %v on loopback, want none", addrs)
	}
	if ok, failed := a.HolePunches(); ok+failed != 0 {
		t.Errorf("HolePunches %d, %d", ok, failed)
	}
	if a.Relayed(b.ID()) {
		t.Error("Relayed with no connection")
	}
	if _, err := a.Connect(testCtx(t, 10*time.Second), b.JoinAddrs()[0]); err != nil {
		t.Fatal(err)
	}
	if a.Relayed(b.ID()) {
		t.Error("a direct connection counts as relayed")
	}
	if pm := a.PortMapping(); strings.HasPrefix(pm, "/") {
		t.Errorf("PortMapping %q on a machine without a gateway", pm)
	}
}

// Announce replaces the advertised addresses.
func TestAnnounce(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ListenAddrs = loopbackAddrs
	cfg.Announce = []string{"/ip4/203.0.113.7/tcp/4001"}
	h := startTestHost(t, cfg)
	if got := h.Addrs(); len(got) != 1 || got[0].String() != cfg.Announce[0] {
		t.Errorf("Addrs %v, want %v", got, cfg.Announce)
	}
}

// A peer reached only through a relay is Relayed; the relay's ACL, built
// from RelayAllowed, refuses a peer it does not allow.
func TestRelayedAndACL(t *testing.T) {
	r, a, b, stranger := newTestHost(t, ""), newTestHost(t, ""), newTestHost(t, ""), newTestHost(t, "")
	allowed := func(p peer.ID) bool { return p != stranger.ID() }
	if _, err := relay.New(r.Host, relay.WithACL(relayACL(allowed))); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 20*time.Second)
	rinfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	for _, h := range []*Host{a, b, stranger} {
		if err := h.Host.Connect(ctx, rinfo); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Reserve(ctx, stranger.Host, rinfo); err == nil {
		t.Error("the relay gave a slot to a peer RelayAllowed refuses")
	}
	if _, err := client.Reserve(ctx, b.Host, rinfo); err != nil {
		t.Fatal(err)
	}
	learnCircuit(t, a, b, r)
	if err := a.Host.Connect(network.WithAllowLimitedConn(ctx, "test"), peer.AddrInfo{ID: b.ID()}); err != nil {
		t.Fatal(err)
	}
	if !a.Relayed(b.ID()) {
		t.Errorf("a's only connection to b is %v, yet not Relayed", a.Network().ConnsToPeer(b.ID())[0].RemoteMultiaddr())
	}
}

func TestHolePunchTracer(t *testing.T) {
	var r reach
	r.Trace(&holepunch.Event{Type: holepunch.EndHolePunchEvtT, Evt: &holepunch.EndHolePunchEvt{Success: true}})
	r.Trace(&holepunch.Event{Type: holepunch.EndHolePunchEvtT, Evt: &holepunch.EndHolePunchEvt{}})
	r.Trace(&holepunch.Event{Type: holepunch.EndHolePunchEvtT, Evt: &holepunch.EndHolePunchEvt{}})
	r.Trace(&holepunch.Event{Type: holepunch.StartHolePunchEvtT, Evt: &holepunch.StartHolePunchEvt{}})
	h := &Host{reach: &r}
	if ok, failed := h.HolePunches(); ok != 1 || failed != 2 {
		t.Errorf("HolePunches %d, %d; want 1, 2", ok, failed)
	}
}

// The default relay source offers the peers we are connected to.
func TestConnectedRelays(t *testing.T) {
	a, b := newTestHost(t, ""), newTestHost(t, "")
	if _, err := a.Connect(testCtx(t, 10*time.Second), b.JoinAddrs()[0]); err != nil {
		t.Fatal(err)
	}
	var got []peer.ID
	for ai := range a.reach.connectedRelays(context.Background(), 5) {
		got = append(got, ai.ID)
	}
	if len(got) != 1 || got[0] != b.ID() {
		t.Errorf("relay candidates %v, want [%s]", got, b.ID())
	}
}

// A dial-only host (no listen address, as a sweep worker) starts with the
// default reachability settings: nobody can dial it, so it needs no relay.
func TestDialOnlyHostStarts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.ListenAddrs = nil
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("a dial-only host with the default config: %v", err)
	}
	h.Close()
}

// learnCircuit gives a only b's addresses through relay r.
func learnCircuit(t *testing.T, a, b, r *Host) {
	t.Helper()
	circuit, err := ma.NewMultiaddr("/p2p/" + r.ID().String() + "/p2p-circuit")
	if err != nil {
		t.Fatal(err)
	}
	for _, ra := range r.Addrs() {
		a.Peerstore().AddAddr(b.ID(), ra.Encapsulate(circuit), time.Hour)
	}
}
