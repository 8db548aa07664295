package p2p

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tlssec "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Host is a libp2p host with swarmtrain's transports, limits and counters.
//
// Note that Host.Connect(ctx, string) shadows the embedded
// host.Host.Connect(ctx, peer.AddrInfo), so *Host is not itself a host.Host:
// pass h.Host to libraries that want one (pubsub, DHT).
type Host struct {
	host.Host

	// Bandwidth holds per-peer and per-protocol rates and totals of stream
	// payload bytes (not counting encryption and muxer overhead). Its figures
	// lag by up to a second; BytesIn and BytesOut are exact.
	Bandwidth *metrics.BandwidthCounter

	in, out *atomic.Int64
	bw      *countingReporter
	simOpen *atomic.Int64
	reach   *reach
}

// New starts a host listening on cfg.ListenAddrs with TCP and QUIC (TCP
// alone when cfg.PSK makes it a private network), TLS 1.3 and Noise (TLS preferred: it is the faster of the two on TCP), and yamux.
// TCP dials leave from the listen port, and crossing dials settle their
// roles (simopen.go); reachability machinery (AutoNAT, hole punching, port
// mapping, relays) is on as cfg says (nat.go). Close the host to release
// its ports.
func New(cfg Config) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key := cfg.Identity
	if key == nil {
		var err error
		if key, err = LoadOrCreateIdentity(filepath.Join(cfg.Dir, IdentityFile)); err != nil {
			return nil, err
		}
	}
	rm, err := newResourceManager(cfg)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(cfg.ConnsLow, cfg.ConnsHigh, connmgr.WithGracePeriod(cfg.ConnGrace))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	simOpen := new(atomic.Int64)
	bw := &countingReporter{BandwidthCounter: metrics.NewBandwidthCounter()}
	listen := libp2p.NoListenAddrs
	if addrs := cfg.listenAddrs(); len(addrs) > 0 {
		listen = libp2p.ListenAddrStrings(addrs...)
	}
	// A copy of libp2p's yamux settings (the default is shared by every
	// host) with our window; see Config.MaxStreamWindow.
	mux := *yamux.DefaultTransport
	mux.MaxStreamWindowSize = uint32(cfg.MaxStreamWindow)
	opts := []libp2p.Option{
		libp2p.Identity(key),
		listen,
		// TCP dials leave from the listen port (SO_REUSEPORT, libp2p's
		// default): hole punching needs it, and identify reports our
		// public address only on such connections. Crossing dials then
		// meet as one TCP simultaneous open; settleRoles (simopen.go)
		// turns that into a working connection.
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(TLSID, settleRoles(tuneSecurity(tlssec.New, cfg.TCPNotSentLowat), simOpen)),
		libp2p.Security(NoiseID, settleRoles(tuneSecurity(noise.New, cfg.TCPNotSentLowat), simOpen)),
		libp2p.Muxer(yamux.ID, settledMuxer{&mux}),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.BandwidthReporter(bw),
		libp2p.UserAgent(UserAgent),
		// Prometheus collectors are process-global; a demo runs several
		// hosts in one process, and /status reads Bandwidth instead.
		libp2p.DisableMetrics(),
	}
	if cfg.PSK != nil {
		// The key guards every connection before the handshake; QUIC has
		// no such layer in libp2p (it refuses to start with a PSK).
		opts = append(opts, libp2p.PrivateNetwork(cfg.PSK))
	} else {
		opts = append(opts, libp2p.Transport(libp2pquic.NewTransport))
	}
	if cfg.PreferTCP {
		opts = append(opts, libp2p.SwarmOpts(swarm.WithDialRanker(tcpFirstRanker(cfg.QUICFallback))))
	}
	if len(cfg.listenAddrs()) == 0 {
		// A dial-only host (a sweep worker) cannot be dialled at all: no
		// relay slot, relay service or hole punch can help it, and
		// libp2p turns the relay transport off with no listen address.
		cfg.AutoRelay, cfg.RelayService, cfg.HolePunching = false, false, false
	}
	r := new(reach)
	ropts, err := reachOptions(cfg, r)
	if err != nil {
		rm.Close()
		cm.Close()
		return nil, err
	}
	opts = append(opts, ropts...)
	h, err := libp2p.New(opts...)
	if err != nil {
		// libp2p.New closes the resource and connection managers it was
		// given when it fails after taking them; closing again is harmless.
		rm.Close()
		cm.Close()
		return nil, fmt.Errorf("p2p: start host: %w", err)
	}
	r.mu.Lock()
	r.h = h
	r.mu.Unlock()
	if err := r.watchReachability(h); err != nil {
		h.Close()
		return nil, err
	}
	return &Host{Host: h, Bandwidth: bw.BandwidthCounter, in: &bw.in, out: &bw.out, bw: bw, simOpen: simOpen, reach: r}, nil
}

// newResourceManager keeps libp2p's scaled connection and stream counts for
// the host as a whole (they bound what a flood of peers can open), caps
// each peer far below them (see peerStreams, peerWindows), and replaces
// libp2p's memory limits, which throttle bulk streams: by default a
// connection gets 32 MiB, so at most one stream per connection could grow
// its yamux window to 16 MiB.
func newResourceManager(cfg Config) (network.ResourceManager, error) {
	scaling := rcmgr.DefaultLimits // a copy; its nil maps are filled below
	libp2p.SetDefaultServiceLimits(&scaling)
	mem := rcmgr.LimitVal64(cfg.MemoryLimit)
	if cfg.MemoryLimit == 0 {
		mem = rcmgr.Unlimited64
	}
	// Yamux reserves window memory on the connection's span, which counts
	// against the connection, its peer, and the system (or transient before
	// the peer is known), so these are the scopes that matter.
	m := rcmgr.ResourceLimits{Memory: mem}
	peerMem := rcmgr.LimitVal64(cfg.peerMemory())
	perPeer := rcmgr.ResourceLimits{
		StreamsInbound: peerStreamsInbound, StreamsOutbound: peerStreamsOutbound, Streams: peerStreams,
		ConnsInbound: peerConnsInbound, Conns: peerConns,
		Memory: peerMem,
	}
	partial := rcmgr.PartialLimitConfig{
		System: m, Transient: m, AllowlistedSystem: m, AllowlistedTransient: m,
		PeerDefault: perPeer, Conn: rcmgr.ResourceLimits{Memory: peerMem},
	}
	limits := partial.Build(scaling.AutoScale())

	perIP := cfg.ConnsPerIP
	burst := 2 * perIP
	loopback := []rate.PrefixLimit{ // unlimited, as libp2p does: local demos open many
		{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("::1/128")},
	}
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits),
		rcmgr.WithMetricsDisabled(),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: perIP}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: perIP}, {PrefixLength: 48, ConnCount: 8 * perIP}},
		),
		rcmgr.WithConnRateLimiters(&rate.Limiter{
			NetworkPrefixLimits: loopback,
			SubnetRateLimiter: rate.SubnetLimiter{
				IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: rate.Limit{RPS: cfg.ConnRatePerIP, Burst: burst}}},
				IPv6SubnetLimits: []rate.SubnetLimit{
					{PrefixLength: 56, Limit: rate.Limit{RPS: cfg.ConnRatePerIP, Burst: burst}},
					{PrefixLength: 48, Limit: rate.Limit{RPS: 2.5 * cfg.ConnRatePerIP, Burst: 5 * burst}},
				},
				GracePeriod: time.Minute,
			},
		}),
	)
}

// tcpFirstRanker ranks plain TCP addresses as libp2p would on their own, and
// every other address (QUIC, relays, ...) as libp2p would, but fallback
// later. The swarm dials the next batch at once when all earlier dials have
// failed, so an unreachable TCP address costs no extra wait.
func tcpFirstRanker(fallback time.Duration) network.DialRanker {
	return func(addrs []ma.Multiaddr) []network.AddrDelay {
		var tcp, rest []ma.Multiaddr
		for _, a := range addrs {
			if isPlainTCP(a) {
				tcp = append(tcp, a)
			} else {
				rest = append(rest, a)
			}
		}
		if len(tcp) == 0 {
			return swarm.DefaultDialRanker(rest)
		}
		out := swarm.DefaultDialRanker(tcp)
		for _, d := range swarm.DefaultDialRanker(rest) {
			d.Delay += fallback
			out = append(out, d)
		}
		return out
	}
}

// isPlainTCP: a direct TCP address (no relay, no websocket on top).
func isPlainTCP(a ma.Multiaddr) bool {
	has := func(code int) bool { _, err := a.ValueForProtocol(code); return err == nil }
	return has(ma.P_TCP) && !has(ma.P_CIRCUIT) && !has(ma.P_WS) && !has(ma.P_WSS)
}

// JoinAddrs returns the addresses others can use to reach this host, each
// ending in /p2p/<id>, with 0.0.0.0 expanded to the interfaces' addresses.
// Order: non-loopback IPv4 TCP first (the most widely reachable, and the
// fastest transport on a CPU-bound link), then IPv4 QUIC, IPv6, anything
// else, and loopback last (TCP before QUIC there too), so JoinAddrs()[0] is
// the one to print for `--join`.
func (h *Host) JoinAddrs() []string {
	addrs := slices.Clone(h.Addrs())
	slices.SortStableFunc(addrs, func(a, b ma.Multiaddr) int { return cmp.Compare(addrRank(a), addrRank(b)) })
	id := h.ID().String()
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String()+"/p2p/"+id)
	}
	return out
}

// addrRank orders addresses for JoinAddrs: lower is better.
func addrRank(a ma.Multiaddr) int {
	rank := 0
	switch {
	case manet.IsIPLoopback(a):
		rank = 40
	case manet.IsIP6LinkLocal(a):
		rank = 50 // needs a zone to be dialled; rarely useful to others
	}
	if _, err := a.ValueForProtocol(ma.P_IP4); err != nil {
		rank += 10 // IPv6, DNS, relay ...
	}
	_, errTCP := a.ValueForProtocol(ma.P_TCP)
	_, errQUIC := a.ValueForProtocol(ma.P_QUIC_V1)
	_, errCircuit := a.ValueForProtocol(ma.P_CIRCUIT)
	switch {
	case errCircuit == nil:
		rank += 30
	case errTCP == nil:
	case errQUIC == nil:
		rank += 1
	default:
		rank += 2
	}
	return rank
}

// ErrNoPeerID is returned by Connect for an address without a /p2p/<id> part:
// without it the peer cannot be authenticated.
var ErrNoPeerID = errors.New("p2p: address has no /p2p/<peer-id> part")

// Connect dials addr, a multiaddr ending in /p2p/<id> such as one printed by
// JoinAddrs, and returns the peer's ID once a connection is up. If the peer
// is already connected it returns at once, whatever transport that
// connection uses. ctx bounds the dial.
func (h *Host) Connect(ctx context.Context, addr string) (peer.ID, error) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return "", fmt.Errorf("p2p: connect: %q is not a multiaddr: %w", addr, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		if errors.Is(err, peer.ErrInvalidAddr) {
			return "", fmt.Errorf("%w: %q (copy a full address from the other node's JoinAddrs)", ErrNoPeerID, addr)
		}
		return "", fmt.Errorf("p2p: connect: %q: %w", addr, err)
	}
	if info.ID == h.ID() {
		return "", fmt.Errorf("p2p: connect: %q is this node's own address", addr)
	}
	if err := h.Host.Connect(ctx, *info); err != nil {
		return "", fmt.Errorf("p2p: connect %s: %w", addr, err)
	}
	return info.ID, nil
}

// SimultaneousOpens counts connections since New that both ends dialed
// at once (TCP simultaneous open) and that settled their roles by nonce.
func (h *Host) SimultaneousOpens() int { return int(h.simOpen.Load()) }

// BytesIn is the total of stream payload bytes received since New (exact,
// excluding encryption and muxer overhead).
func (h *Host) BytesIn() int64 { return h.in.Load() }

// BytesOut is the total of stream payload bytes sent since New.
func (h *Host) BytesOut() int64 { return h.out.Load() }

// SentByProtocol is the exact total of stream payload bytes sent since
// New, per protocol. "" holds what was written before a stream's protocol
// was known (the listener's side of protocol negotiation).
func (h *Host) SentByProtocol() map[protocol.ID]int64 {
	h.bw.mu.Lock()
	defer h.bw.mu.Unlock()
	return maps.Clone(h.bw.sent)
}

// countingReporter feeds libp2p's BandwidthCounter and keeps exact totals:
// the counter's own totals are only refreshed once a second by a sweeper.
// The per-protocol map stays small: only protocols we speak negotiate.
type countingReporter struct {
	*metrics.BandwidthCounter
	in, out atomic.Int64

	mu   sync.Mutex
	sent map[protocol.ID]int64
}

func (c *countingReporter) LogSentMessageStream(n int64, proto protocol.ID, p peer.ID) {
	c.mu.Lock()
	if c.sent == nil {
		c.sent = map[protocol.ID]int64{}
	}
	c.sent[proto] += n
	c.mu.Unlock()
	c.BandwidthCounter.LogSentMessageStream(n, proto, p)
}

func (c *countingReporter) LogSentMessage(n int64) {
	c.out.Add(n)
	c.BandwidthCounter.LogSentMessage(n)
}

func (c *countingReporter) LogRecvMessage(n int64) {
	c.in.Add(n)
	c.BandwidthCounter.LogRecvMessage(n)
}

var _ metrics.Reporter = (*countingReporter)(nil)
