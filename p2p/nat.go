package p2p

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	basichost "github.com/libp2p/go-libp2p/p2p/host/basic"
	"github.com/libp2p/go-libp2p/p2p/host/observedaddrs"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// A node behind NAT learns its public address from identify: each peer
// tells it the address its connection came from, and libp2p believes an
// address once ActivationThresh distinct peers (by IP) report it. Until
// then the node neither advertises the address nor reports it
// (ObservedAddrs, hence doctor and /status), and AutoNAT v2 has no address
// of ours to test (hole punching alone also takes addresses one peer saw).
// libp2p's 4 suits the public DHT; a node in a small swarm may have only
// two peers outside its own network (TestNATTraversal: the two public
// hosts), so 2. A single lying peer still cannot plant an address. The
// variable is global in libp2p, so it is set once here, before any host
// exists.
func init() { observedaddrs.ActivationThresh = 2 }

// reach holds what the reachability machinery tells the host.
type reach struct {
	reachability atomic.Int32 // network.Reachability, from the event bus
	punchOK      atomic.Int64
	punchFailed  atomic.Int64

	mu  sync.Mutex
	nat basichost.NATManager // nil until libp2p makes it; nil if PortMap is off
	h   host.Host            // set after libp2p.New, for the default relay source
}

// Trace implements holepunch.EventTracer: it counts finished punch
// attempts, on both the initiating and the answering side.
func (r *reach) Trace(evt *holepunch.Event) {
	if e, ok := evt.Evt.(*holepunch.EndHolePunchEvt); ok {
		if e.Success {
			r.punchOK.Add(1)
		} else {
			r.punchFailed.Add(1)
		}
	}
}

// natManager wraps libp2p's UPnP/NAT-PMP manager so PortMapping can ask it.
func (r *reach) natManager(n network.Network) basichost.NATManager {
	m := basichost.NewNATManager(n)
	r.mu.Lock()
	r.nat = m
	r.mu.Unlock()
	return m
}

// connectedRelays is the default RelayPeers: the peers we are connected to,
// with the addresses we know for them (autorelay keeps those that speak
// the relay protocol and have a reservation to give).
func (r *reach) connectedRelays(ctx context.Context, num int) <-chan peer.AddrInfo {
	num = max(0, min(num, 64))
	out := make(chan peer.AddrInfo, num)
	defer close(out)
	r.mu.Lock()
	h := r.h
	r.mu.Unlock()
	if h == nil {
		return out
	}
	for _, p := range h.Network().Peers() {
		if len(out) == num {
			break
		}
		if addrs := h.Peerstore().Addrs(p); len(addrs) > 0 {
			out <- peer.AddrInfo{ID: p, Addrs: addrs}
		}
	}
	return out
}

// relayACL lets RelayAllowed decide who may reserve a slot and who may be
// relayed (both ends of a circuit must be allowed).
type relayACL func(peer.ID) bool

func (f relayACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool { return f(p) }
func (f relayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dst peer.ID) bool {
	return f(src) && f(dst)
}

// reachOptions are the libp2p options for cfg's reachability machinery.
func reachOptions(cfg Config, r *reach) ([]libp2p.Option, error) {
	var opts []libp2p.Option
	if cfg.AutoNAT {
		// v1's service answers peers that ask whether they are reachable
		// (and its client drives the Reachability events); v2 tests each
		// of our addresses separately.
		opts = append(opts, libp2p.EnableNATService(), libp2p.EnableAutoNATv2())
	}
	if cfg.HolePunching {
		opts = append(opts, libp2p.EnableHolePunching(holepunch.WithTracer(r)))
	}
	if cfg.PortMap {
		opts = append(opts, libp2p.NATManager(r.natManager))
	}
	if cfg.RelayService {
		res := relay.DefaultResources()
		res.Limit = &relay.RelayLimit{Duration: cfg.RelayDuration, Data: cfg.RelayData}
		res.MaxCircuits = cfg.RelayCircuits
		res.MaxReservations = cfg.RelayReservations
		res.BufferSize = relayBuffer
		// Swarm members behind one NAT share an address.
		res.MaxReservationsPerIP = cfg.RelayReservations
		res.MaxReservationsPerASN = cfg.RelayReservations
		ropts := []relay.Option{relay.WithResources(res)}
		if cfg.RelayAllowed != nil {
			ropts = append(ropts, relay.WithACL(relayACL(cfg.RelayAllowed)))
		}
		// libp2p runs the service only while AutoNAT says we are public.
		opts = append(opts, libp2p.EnableRelayService(ropts...))
	}
	if cfg.AutoRelay {
		src := cfg.RelayPeers
		if src == nil {
			src = r.connectedRelays
		}
		opts = append(opts, libp2p.EnableAutoRelayWithPeerSource(src,
			autorelay.WithMinCandidates(1),
			autorelay.WithNumRelays(cfg.Relays),
			autorelay.WithBootDelay(cfg.RelayBootDelay),
			autorelay.WithMinInterval(cfg.RelayInterval),
			autorelay.WithBackoff(cfg.RelayBackoff),
		))
	}
	if len(cfg.Announce) > 0 {
		announce := make([]ma.Multiaddr, len(cfg.Announce))
		for i, s := range cfg.Announce {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return nil, fmt.Errorf("p2p config: Announce[%d] %q: %w", i, s, err)
			}
			announce[i] = a
		}
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return announce }))
	}
	return opts, nil
}

// relayBuffer is the relay's copy buffer per circuit direction, in bytes:
// control messages are small, and a relay holds two per circuit.
const relayBuffer = 4 << 10

// watchReachability follows AutoNAT's verdicts on the event bus.
func (r *reach) watchReachability(h host.Host) error {
	sub, err := h.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		return fmt.Errorf("p2p: subscribe to reachability: %w", err)
	}
	go func() {
		defer sub.Close()
		for e := range sub.Out() {
			r.reachability.Store(int32(e.(event.EvtLocalReachabilityChanged).Reachability))
		}
	}()
	return nil
}

// Reachability is AutoNAT's latest verdict: Unknown until peers have dialled
// us back (or failed to), then Public or Private.
func (h *Host) Reachability() network.Reachability {
	return network.Reachability(h.reach.reachability.Load())
}

// ObservedAddrs are this host's public addresses: those others observed us
// at (as identify reports them) and public listen addresses, without relay
// addresses.
func (h *Host) ObservedAddrs() []ma.Multiaddr {
	all := h.Addrs()
	if a, ok := h.Host.(interface{ AllAddrs() []ma.Multiaddr }); ok {
		all = a.AllAddrs()
	}
	var out []ma.Multiaddr
	for _, a := range all {
		if manet.IsPublicAddr(a) && !isCircuit(a) {
			out = append(out, a)
		}
	}
	return out
}

// PortMapping is the outcome of UPnP/NAT-PMP: "" when port mapping is off
// or no gateway answered, else the mapped external address of a TCP
// listen address, or text saying that the gateway made none.
func (h *Host) PortMapping() string {
	h.reach.mu.Lock()
	m := h.reach.nat
	h.reach.mu.Unlock()
	if m == nil || !m.HasDiscoveredNAT() {
		return ""
	}
	for _, l := range h.Network().ListenAddresses() {
		if !isPlainTCP(l) {
			continue
		}
		if ext := m.GetMapping(l); ext != nil {
			return ext.String()
		}
	}
	return "error: gateway found, but it mapped no port"
}

// Relayed reports whether every open connection to p goes through a relay;
// false when there is none.
func (h *Host) Relayed(p peer.ID) bool {
	conns := h.Network().ConnsToPeer(p)
	for _, c := range conns {
		if !isCircuit(c.RemoteMultiaddr()) {
			return false
		}
	}
	return len(conns) > 0
}

// HolePunches counts finished hole-punch attempts (each DCUtR attempt, as
// initiator or responder) that made a direct connection and that did not.
func (h *Host) HolePunches() (ok, failed int) {
	return int(h.reach.punchOK.Load()), int(h.reach.punchFailed.Load())
}

func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}
