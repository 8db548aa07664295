package node

import (
	"context"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// Network is everything a node needs from the network below it: framed
// streams for the protocols (gossip.Transport), the gossip bus, and the
// connections it keeps to the swarm. Production: a libp2p host
// (newHostNetwork); tests: an in-process swarm over gossip.MemNetwork.
type Network interface {
	gossip.Transport
	// Bus joins the run's gossip topics; deliver is called for every
	// valid message from another peer that gate passes.
	Bus(ctx context.Context, run string, gate gossip.Gate, deliver func(from peer.ID, m gossip.Message)) (Publisher, error)
	// Connect dials a join address and returns the peer there.
	Connect(ctx context.Context, addr string) (peer.ID, error)
	// Redial dials a known peer again at the addresses learnt for it.
	Redial(ctx context.Context, p peer.ID) error
	Connected(p peer.ID) bool
	// ClosePeer hangs up on p (it may dial again).
	ClosePeer(p peer.ID)
	// OnDisconnect calls f when the last connection to a peer closes.
	OnDisconnect(f func(peer.ID))
	// Keep protects p's connections from pruning and records addrs
	// (join addresses it gossiped) for dialing it directly.
	Keep(p peer.ID, addrs []string)
	// Learn records addrs for dialing p directly, briefly and without
	// protecting anything: to greet a peer known only from gossip.
	Learn(p peer.ID, addrs []string)
	// JoinAddrs are the addresses others can join us at.
	JoinAddrs() []string
	BytesIn() int64
	BytesOut() int64
	Close() error
}

// Publisher sends gossip messages on the run's topics.
type Publisher interface {
	Publish(ctx context.Context, m gossip.Message) error
	Close()
}

// hostNetwork is a Network over a libp2p host: every stream gets
// per-frame deadlines and size-capped frames from package p2p. A frame
// may take timeout plus its size at minRate (bytes/s; 0: timeout alone),
// so large parts are not cut off on a slow link.
type hostNetwork struct {
	h       *p2p.Host
	timeout time.Duration
	minRate float64
	book    *addrBook // bounds what Keep adds to the peerstore
}

// newHostNetwork starts the libp2p host. admitted is the node's admitted
// set: in an open swarm only its peers may use our relay (in a keyed
// one, only key holders can connect at all, and a home node asks for a
// slot before its hello is through).
func newHostNetwork(cfg Config, admitted func(peer.ID) bool) (*hostNetwork, error) {
	pc := p2p.DefaultConfig()
	pc.Dir = cfg.Dir
	pc.PSK = cfg.SwarmKey
	if len(cfg.Listen) > 0 {
		pc.ListenAddrs = cfg.Listen
	}
	pc.Announce = cfg.Announce
	if cfg.Open {
		pc.RelayAllowed = admitted
	}
	h, err := p2p.New(pc)
	if err != nil {
		return nil, err
	}
	p2p.ServeProbe(h) // for `swarmtrain doctor --join` on other machines
	return &hostNetwork{h: h, timeout: cfg.FrameTimeout, minRate: cfg.MinLinkRate, book: newAddrBook()}, nil
}

func (t *hostNetwork) wrap(s network.Stream) *p2p.Stream {
	st := p2p.NewStream(s, t.timeout)
	st.SetMinRate(t.minRate)
	return st
}

func (t *hostNetwork) Self() peer.ID { return t.h.ID() }

func (t *hostNetwork) Open(ctx context.Context, p peer.ID, proto protocol.ID) (gossip.Stream, error) {
	var s network.Stream
	var err error
	if overRelay[proto] {
		s, err = t.h.NewStream(network.WithAllowLimitedConn(ctx, "swarmtrain control traffic"), p, proto)
	} else {
		s, err = t.h.NewDirectStream(ctx, p, punchWait, proto)
	}
	if err != nil {
		return nil, err
	}
	return t.wrap(s), nil
}

// punchWait is how long after a relayed connection opens a bulk stream
// waits for the hole punch it triggers (DCUtR: a few round trips, up to
// three attempts). Past it the punch has failed, and waiting longer only
// stalls the round: the open fails, the round fails at once (its copy was
// never sent), and the next round makes the relayed peer a client.
const punchWait = 15 * time.Second

// overRelay are the protocols that may run over a relayed connection:
// a few hundred bytes a round. Everything else (all-reduce parts, state,
// data) waits for a direct connection (at most punchWait for a
// hole punch), so bulk never crosses a relay. Two home nodes that cannot
// punch still greet each other (or each would ignore the other's gossip)
// and swap the round's digests through a public node's relay.
var overRelay = map[protocol.ID]bool{gossip.ProtoHello: true, gossip.ProtoDigest: true}

func (t *hostNetwork) Handle(proto protocol.ID, h func(gossip.Stream)) {
	t.h.SetStreamHandler(proto, func(s network.Stream) { h(t.wrap(s)) })
}

func (t *hostNetwork) Bus(ctx context.Context, run string, gate gossip.Gate, deliver func(peer.ID, gossip.Message)) (Publisher, error) {
	return gossip.NewBus(ctx, t.h.Host, run, gate, deliver)
}

func (t *hostNetwork) Connect(ctx context.Context, addr string) (peer.ID, error) {
	// Our join plan paces retries; libp2p's dial backoff would fail
	// them at once for a while after the first refused dial.
	if ai, err := peer.AddrInfoFromString(addr); err == nil {
		if sw, ok := t.h.Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(ai.ID)
		}
	}
	return t.h.Connect(ctx, addr)
}

// Discover starts the host's discovery of run's peers: the swarmtrain
// DHT, and mDNS when asked.
func (t *hostNetwork) Discover(run string, mdns bool, found func(peer.ID, []string)) (io.Closer, error) {
	cfg := p2p.DefaultDiscoveryConfig(run)
	cfg.MDNS = mdns
	cfg.Found = func(ai peer.AddrInfo) {
		addrs := make([]string, 0, len(ai.Addrs))
		for _, a := range ai.Addrs {
			addrs = append(addrs, a.String()+"/p2p/"+ai.ID.String())
		}
		found(ai.ID, addrs)
	}
	return p2p.StartDiscovery(t.h, cfg)
}

func (t *hostNetwork) Redial(ctx context.Context, p peer.ID) error {
	// Our own backoff paces the dials; libp2p's (which grows to
	// minutes) would keep a healed link unused.
	return t.h.Host.Connect(network.WithForceDirectDial(ctx, "swarm redial"), peer.AddrInfo{ID: p})
}

func (t *hostNetwork) Connected(p peer.ID) bool {
	return t.h.Network().Connectedness(p) == network.Connected
}

func (t *hostNetwork) ClosePeer(p peer.ID) { t.h.Network().ClosePeer(p) }

func (t *hostNetwork) OnDisconnect(f func(peer.ID)) {
	t.h.Network().Notify(&network.NotifyBundle{DisconnectedF: func(nw network.Network, c network.Conn) {
		if p := c.RemotePeer(); nw.Connectedness(p) != network.Connected {
			f(p)
		}
	}})
}

func (t *hostNetwork) Keep(p peer.ID, addrs []string) {
	if !t.addAddrs(p, addrs, keptAddrTTL) {
		return // the book is full of other peers: no addresses, no protection
	}
	t.h.ConnManager().Protect(p, "swarm")
}

func (t *hostNetwork) Learn(p peer.ID, addrs []string) { t.addAddrs(p, addrs, time.Minute) }

// addAddrs records those of addrs that are p's (ending in /p2p/<p>), as
// far as the address book's caps allow; false when the book is full of
// other peers.
func (t *hostNetwork) addAddrs(p peer.ID, addrs []string, ttl time.Duration) bool {
	mas, ok := t.book.admit(p, addrs, time.Now())
	if ok && len(mas) > 0 {
		t.h.Peerstore().AddAddrs(p, mas, ttl)
	}
	return ok
}

func (t *hostNetwork) JoinAddrs() []string { return t.h.JoinAddrs() }
func (t *hostNetwork) BytesIn() int64      { return t.h.BytesIn() }
func (t *hostNetwork) BytesOut() int64     { return t.h.BytesOut() }

func (t *hostNetwork) SentByProtocol() map[protocol.ID]int64 { return t.h.SentByProtocol() }
func (t *hostNetwork) Close() error                          { return t.h.Close() }
