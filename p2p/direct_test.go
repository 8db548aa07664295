package p2p

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
)

// Over a relayed-only connection (hole punching off, as behind routers
// that drop punches) a direct stream waits at most punchWait from the
// connection's opening, then fails at once: not until the caller's
// context ends, as libp2p's NewStream does. Once the peers have a direct
// connection the stream opens.
func TestNewDirectStreamOverRelay(t *testing.T) {
	noPunch := func() *Host {
		cfg := DefaultConfig()
		cfg.ListenAddrs = loopbackAddrs
		cfg.HolePunching = false
		return startTestHost(t, cfg)
	}
	r, a, b := newTestHost(t, ""), noPunch(), noPunch()
	if _, err := relay.New(r.Host); err != nil {
		t.Fatal(err)
	}
	const proto = "/swarmtrain-test/bulk/1"
	b.SetStreamHandler(proto, func(s network.Stream) { s.Close() })
	ctx := testCtx(t, 60*time.Second)
	rinfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	for _, h := range []*Host{a, b} {
		if err := h.Host.Connect(ctx, rinfo); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Reserve(ctx, b.Host, rinfo); err != nil {
		t.Fatal(err)
	}
	learnCircuit(t, a, b, r)
	// No connection yet: the dial finds only the relay, and the stream
	// waits for a punch no longer than over a relayed connection.
	if _, err := a.NewDirectStream(ctx, b.ID(), 300*time.Millisecond, proto); !errors.Is(err, ErrRelayedOnly) {
		t.Fatalf("a direct stream to a peer reachable only through a relay: %v, want ErrRelayedOnly after the wait", err)
	}
	if !a.Relayed(b.ID()) {
		t.Fatal("the test needs a relayed-only connection")
	}

	// Within punchWait of the connection: wait, then fail naming the relay.
	if _, err := a.NewDirectStream(ctx, b.ID(), 300*time.Millisecond, proto); !errors.Is(err, ErrRelayedOnly) {
		t.Fatalf("a direct stream over a fresh relayed connection: %v, want ErrRelayedOnly after the wait", err)
	}
	// Past it: fail at once (the caller's context has most of a minute).
	if _, err := a.NewDirectStream(ctx, b.ID(), 0, proto); !errors.Is(err, ErrRelayedOnly) {
		t.Fatalf("a direct stream past the punch wait: %v, want ErrRelayedOnly", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the direct stream waited for the caller's context")
	}

	// Again: a new connection (relayed behind NAT, where b's side would
	// punch from it; here b's direct address, learnt by identify, works),
	// and none while the relayed one is young.
	if tried, err := a.RetryPunch(ctx, b.ID(), time.Hour); tried || err != nil {
		t.Fatalf("RetryPunch on a young relayed connection: tried %v, %v", tried, err)
	}
	old := a.Network().ConnsToPeer(b.ID())[0]
	if tried, err := a.RetryPunch(ctx, b.ID(), 0); !tried || err != nil {
		t.Fatalf("RetryPunch: tried %v, %v", tried, err)
	}
	now := a.Network().ConnsToPeer(b.ID())
	if len(now) == 0 || slices.Contains(now, old) {
		t.Fatalf("after RetryPunch: %d connections, the old one among them: %v; want a new one", len(now), slices.Contains(now, old))
	}

	// A direct connection: the stream opens.
	if err := a.Host.Connect(network.WithForceDirectDial(ctx, "test"), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := a.NewDirectStream(ctx, b.ID(), 0, proto)
	if err != nil {
		t.Fatalf("a direct stream once connected directly: %v", err)
	}
	s.Close()
	if tried, err := a.RetryPunch(ctx, b.ID(), 0); tried || err != nil {
		t.Fatalf("RetryPunch with a direct connection: tried %v, %v", tried, err)
	}
}
