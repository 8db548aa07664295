package p2p

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/internal/buildinfo"
)

// IdentityFile is the name of the private key file inside Config.Dir.
const IdentityFile = "identity.key"

// minMemoryLimit lets exactly one yamux window grow to maxStreamWindow:
// growth is granted while usage stays under 129/256 of the limit.
const minMemoryLimit = 32 << 20

// minStreamWindow is yamux's initial stream window, below which windows
// never shrink; maxStreamWindow is libp2p's default largest window.
const (
	minStreamWindow = 256 << 10
	maxStreamWindow = 16 << 20
)

// What one peer may hold at this host, whoever it is: far below the host's
// own budget (libp2p scales that to thousands of streams and 128+ conns),
// sized for what one honest peer needs with us at once. A round with one
// peer takes a few streams each way (a match, a part to its owner and the
// result back, PowerSGD's two sub-rounds, a repair), a joiner two state
// streams, gossipsub one each way, a sweep worker one, identify and ping a
// few: under 16 of each direction. 64 leaves room for retries overlapping
// the streams they replace, while 16 such peers cannot fill the host's
// inbound streams (1024 at the least). Connections: libp2p dials up to 8
// addresses of a peer at once (TCP, QUIC, relays), so 8 in all; only 4 of
// them inbound, since an honest peer needs one and a simultaneous dial two.
const (
	peerStreamsInbound  = 64
	peerStreamsOutbound = 64
	peerStreams         = 128
	peerConnsInbound    = 4
	peerConns           = 8
)

// peerWindows is how many stream windows of MaxStreamWindow one peer may
// make us reserve: 16 bulk streams at full window (more than a round, a
// state download and a repair together), doubled because yamux grows a
// window only while the peer's reservations stay under half its limit.
// With the default 512 KiB windows that is 16 MiB, raised to
// minMemoryLimit: 32 MiB, 1/32 of the default MemoryLimit.
const peerWindows = 2 * 16

// UserAgent is what identify tells other peers, swarmtrain/<version>: it
// tells which build a peer in the log runs.
var UserAgent = "swarmtrain/" + buildinfo.Version()

// Config describes one libp2p host. Start from DefaultConfig and change fields;
// every default lives in DefaultConfig, nowhere else.
type Config struct {
	// Dir is the node directory; the identity lives in Dir/identity.key.
	// Several nodes on one machine need different Dirs, or they share a peer ID.
	// May be empty only when Identity is set.
	Dir string

	// Identity, when non-nil, is used instead of Dir/identity.key: for tests
	// and throwaway nodes whose peer ID need not survive a restart.
	Identity crypto.PrivKey

	// PSK, when set, makes the host a libp2p private network: every
	// connection is encrypted with this 32-byte pre-shared key before the
	// handshake, so a peer without it cannot complete one (it learns our
	// peer ID from the address it dialled and nothing more). libp2p has no
	// PSK for QUIC, so a keyed host runs TCP only: QUIC listen addresses
	// are dropped and QUIC is never dialled. Empty: an open host.
	PSK pnet.PSK

	// ListenAddrs are the multiaddrs to listen on. Port 0 picks a free port.
	// 0.0.0.0 listens on every interface; JoinAddrs expands it to concrete
	// addresses. An empty list makes a dial-only node (it can still accept
	// streams on connections it opened, but nobody can dial it).
	ListenAddrs []string

	// PreferTCP makes outgoing dials try TCP addresses first and QUIC (and
	// relays) only QUICFallback later, if TCP has not connected by then.
	// libp2p's own ranking prefers QUIC, which on a CPU-bound link costs
	// about twice the CPU per byte of TCP+TLS (one stream on loopback, 2
	// cores: TCP 460-640 MiB/s, QUIC 140-290 MiB/s; see BENCHMARKS.md). QUIC's gains are a faster
	// handshake and no head-of-line blocking between streams; hole punching
	// is unaffected (it dials all addresses at once regardless).
	PreferTCP    bool
	QUICFallback time.Duration

	// MemoryLimit is the number of bytes the resource manager lets the host
	// reserve. Each peer (and each of its connections) gets less:
	// peerWindows×MaxStreamWindow, at least 32 MiB and at most MemoryLimit
	// (peerMemory), so no peer can make us buffer more than its share. It is almost all yamux receive windows: a TCP stream
	// starts at a 256 KiB window and doubles it up to MaxStreamWindow, but
	// only while the reservation succeeds, i.e. while the host, the peer and
	// the connection are each under about half of this limit. Without growth
	// a stream moves at most 256 KiB per round trip (2.5 MiB/s at 100 ms).
	// So MemoryLimit/(2*MaxStreamWindow) bulk streams can run at full window
	// at once.
	// Larger: more fast streams; smaller: less memory a peer can make us
	// buffer. 0 means unlimited. QUIC windows (10 MB per stream) are not
	// counted here.
	MemoryLimit int64

	// ConnsPerIP caps concurrent connections from one IPv4 address (/32) or
	// IPv6 /56 prefix; loopback is never capped. libp2p's own default is 8,
	// which refuses the ninth volunteer behind a shared NAT. New connections
	// from one such address are also rate limited to ConnRatePerIP per second
	// after a burst of 2*ConnsPerIP. Larger: more peers behind one NAT;
	// smaller: less a single address can hold.
	ConnsPerIP int

	// ConnRatePerIP is the steady rate, in new connections per second, that
	// one address (as in ConnsPerIP) may open after its burst.
	ConnRatePerIP float64

	// ConnsLow and ConnsHigh are the connection manager's watermarks: once
	// more than ConnsHigh connections are open it closes the least useful
	// ones down to ConnsLow, sparing connections younger than ConnGrace and
	// those protected with ConnManager().Protect (do that for all-reduce
	// partners). Higher: bigger swarms without churn; lower: fewer sockets.
	ConnsLow  int
	ConnsHigh int
	ConnGrace time.Duration

	// MaxStreamWindow, in bytes, is the largest receive window a yamux
	// stream grows to (from 256 KiB, the least this may be). A sending
	// stream can have a whole window written and not yet read, and yamux
	// sends frames strictly in the order they were written, so that much
	// bulk data can sit ahead of every gossip or matchmaking frame on the
	// same connection: 512 KiB is 0.4 s at 10 Mbit/s, libp2p's 16 MiB 13 s.
	// Yamux does grow a bulk stream's window that way on a slow link: it
	// doubles the window while the peer reads half of it within 4 round
	// trips, and the round trips it measures (every 30 s) include the queue
	// the window built. In netlab at 10 Mbit/s and 60 ms round trips, a
	// small frame behind one bulk stream took 0.2-0.3 s with 512 KiB; with
	// 16 MiB 0.4 s, and 0.9-1.7 s after the first 30 s. Larger: faster
	// single streams over long fast paths, since a stream moves at most a
	// window per round trip (about half in practice: on 100 Mbit/s with 60
	// ms round trips, 512 KiB gave 30 Mbit/s and 16 MiB 74); smaller: less
	// delay behind bulk transfers on slow links. At most 16 MiB, which
	// MemoryLimit's floor is sized for.
	MaxStreamWindow int

	// TCPNotSentLowat, in bytes, caps the data each TCP socket holds that
	// the kernel has not sent yet (TCP_NOTSENT_LOWAT, on dialed and accepted
	// connections alike; Linux only). Without it the kernel takes up to
	// net.ipv4.tcp_wmem's maximum (4 MiB by default) from yamux. Yamux's own
	// send queue is first-in first-out as well, so a frame waits behind the
	// same bulk data wherever it is queued; what this changes is yamux's
	// pings, which skip yamux's queue but not the kernel's: without it they
	// measure the queue and yamux grows its windows further (in the test
	// above with 16 MiB windows, 1.7 s after 30 s instead of 0.9 s), and the
	// case where streams' windows add up to more than yamux's queue holds
	// (64 frames of up to 64 KiB). Smaller: less queued in the kernel; too
	// small and a fast link idles between the writer's wakeups (128 KiB
	// lasts 1 ms at 1 Gbit/s). 0 leaves the kernel's default
	// (net.ipv4.tcp_notsent_lowat, normally unlimited).
	TCPNotSentLowat int

	// Reachability (nat.go). AutoNAT asks peers to dial us back and so
	// decides Host.Reachability: v2 tests each address, and we answer
	// others' v1 and v2 requests. Off: Reachability stays Unknown, and
	// the relay service (which libp2p runs only while we are Public) and
	// autorelay (which acts only while we are Private) never start.
	AutoNAT bool

	// HolePunching upgrades a relayed connection to a direct one (DCUtR:
	// both ends dial each other's observed address at the same moment,
	// from their listen ports, so each NAT sees an outgoing connection).
	HolePunching bool

	// PortMap asks the home router for a port forward (UPnP IGD or
	// NAT-PMP); Host.PortMapping says what came of it. Costs a few
	// multicast packets at start; off where no router should be asked.
	PortMap bool

	// RelayService serves circuit relay v2 while AutoNAT says we are public,
	// so that peers behind NAT can be reached through us (and then hole
	// punch). The limits are for control traffic, not bulk: a relayed
	// connection is reset after RelayDuration or RelayData bytes each way
	// (the peers reconnect, and a relayed peer sends its bulk data over
	// direct connections it dials), at most RelayCircuits circuits per
	// peer and RelayReservations peers at once. Larger: fewer resets of
	// long relayed links; smaller: less a relayed peer costs us.
	RelayService      bool
	RelayDuration     time.Duration
	RelayData         int64 // bytes per direction per circuit
	RelayCircuits     int
	RelayReservations int

	// RelayAllowed, when set, decides which peers may reserve a relay slot
	// and be relayed (both ends of a circuit): the node restricts it to
	// admitted swarm members. Nil allows every peer that can connect,
	// which with a PSK means holders of the swarm key.
	RelayAllowed func(peer.ID) bool

	// AutoRelay makes a host that AutoNAT finds private reserve a slot on
	// Relays public peers and advertise the relayed addresses: without
	// them nobody can dial it first. Candidates come from RelayPeers
	// (the node feeds it public swarm members); nil uses the peers we
	// are connected to. RelayBootDelay is how long autorelay waits for
	// candidates at start, RelayInterval how often at most it asks
	// RelayPeers for more, RelayBackoff how long it shuns a relay that
	// failed. Shorter: relayed sooner; longer: fewer requests.
	AutoRelay      bool
	RelayPeers     func(ctx context.Context, num int) <-chan peer.AddrInfo
	Relays         int
	RelayBootDelay time.Duration
	RelayInterval  time.Duration
	RelayBackoff   time.Duration

	// Announce, when non-empty, replaces the addresses the host tells
	// others (identify, relays): multiaddrs such as a port forwarded by
	// hand, /ip4/203.0.113.7/tcp/4001. Empty: libp2p's own choice
	// (listen, observed, port-mapped and relayed addresses).
	Announce []string
}

// DefaultConfig returns a complete configuration: TCP and QUIC on every
// interface with random ports, TCP preferred when dialing, 1 GiB of window
// memory, 64 connections per address, libp2p's connection-manager
// watermarks, stream windows and kernel send queues kept short enough
// for 10 Mbit/s links, and every reachability mechanism on: AutoNAT, hole
// punching, port mapping, a relay for control traffic (10 min or 8 MiB
// each way per circuit) while public, and two relays while private.
func DefaultConfig() Config {
	return Config{
		ListenAddrs:   []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"},
		PreferTCP:     true,
		QUICFallback:  250 * time.Millisecond,
		MemoryLimit:   1 << 30,
		ConnsPerIP:    64,
		ConnRatePerIP: 1,
		ConnsLow:      160,
		ConnsHigh:     192,
		ConnGrace:     time.Minute,

		MaxStreamWindow: 512 << 10,
		TCPNotSentLowat: 128 << 10,

		AutoNAT:           true,
		HolePunching:      true,
		PortMap:           true,
		RelayService:      true,
		RelayDuration:     10 * time.Minute,
		RelayData:         8 << 20,
		RelayCircuits:     16,
		RelayReservations: 128,
		AutoRelay:         true,
		Relays:            2,
		RelayBootDelay:    10 * time.Second,
		RelayInterval:     30 * time.Second,
		RelayBackoff:      time.Minute,
	}
}

// peerMemory is the memory one peer (and one connection) may reserve:
// room for peerWindows windows, at least minMemoryLimit, never more than
// the host's own limit (0: unlimited).
func (c Config) peerMemory() int64 {
	m := max(int64(peerWindows)*int64(c.MaxStreamWindow), minMemoryLimit)
	if c.MemoryLimit > 0 {
		m = min(m, c.MemoryLimit)
	}
	return m
}

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	if c.Dir == "" && c.Identity == nil {
		return errors.New("p2p config: Dir is empty and no Identity is set; the node needs a directory for identity.key")
	}
	if c.PSK != nil && len(c.PSK) != SwarmKeySize {
		return fmt.Errorf("p2p config: PSK has %d bytes, want %d (or none for an open host)", len(c.PSK), SwarmKeySize)
	}
	for i, s := range c.ListenAddrs {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("p2p config: ListenAddrs[%d] %q is not a multiaddr: %w", i, s, err)
		}
	}
	if c.PSK != nil && len(c.ListenAddrs) > 0 && len(c.listenAddrs()) == 0 {
		return fmt.Errorf("p2p config: ListenAddrs %q are all QUIC, which a host with a PSK cannot use; add a TCP address", c.ListenAddrs)
	}
	if c.QUICFallback < 0 {
		return fmt.Errorf("p2p config: QUICFallback %v must be >= 0", c.QUICFallback)
	}
	if c.MemoryLimit < 0 {
		return fmt.Errorf("p2p config: MemoryLimit %d must be >= 0 bytes (0 = unlimited)", c.MemoryLimit)
	}
	if c.MemoryLimit > 0 && c.MemoryLimit < minMemoryLimit {
		return fmt.Errorf("p2p config: MemoryLimit %d must be 0 (unlimited) or >= %d bytes (32 MiB), the least that lets one stream window reach 16 MiB", c.MemoryLimit, minMemoryLimit)
	}
	if c.ConnsPerIP < 1 {
		return fmt.Errorf("p2p config: ConnsPerIP %d must be >= 1", c.ConnsPerIP)
	}
	if !(c.ConnRatePerIP > 0) {
		return fmt.Errorf("p2p config: ConnRatePerIP %v must be > 0 connections/s", c.ConnRatePerIP)
	}
	if c.ConnsLow < 1 || c.ConnsHigh < c.ConnsLow {
		return fmt.Errorf("p2p config: ConnsLow %d and ConnsHigh %d must satisfy 1 <= ConnsLow <= ConnsHigh", c.ConnsLow, c.ConnsHigh)
	}
	if c.ConnGrace < 0 {
		return fmt.Errorf("p2p config: ConnGrace %v must be >= 0", c.ConnGrace)
	}
	if c.MaxStreamWindow < minStreamWindow || c.MaxStreamWindow > maxStreamWindow {
		return fmt.Errorf("p2p config: MaxStreamWindow %d must be between %d bytes (256 KiB, yamux's initial window) and %d (16 MiB)", c.MaxStreamWindow, minStreamWindow, maxStreamWindow)
	}
	if c.TCPNotSentLowat < 0 {
		return fmt.Errorf("p2p config: TCPNotSentLowat %d must be >= 0 bytes (0 = the kernel's default)", c.TCPNotSentLowat)
	}
	if c.RelayService {
		switch {
		case c.RelayDuration <= 0:
			return fmt.Errorf("p2p config: RelayDuration %v must be > 0", c.RelayDuration)
		case c.RelayData <= 0:
			return fmt.Errorf("p2p config: RelayData %d must be > 0 bytes", c.RelayData)
		case c.RelayCircuits < 1:
			return fmt.Errorf("p2p config: RelayCircuits %d must be >= 1", c.RelayCircuits)
		case c.RelayReservations < 1:
			return fmt.Errorf("p2p config: RelayReservations %d must be >= 1", c.RelayReservations)
		}
	}
	if c.AutoRelay {
		switch {
		case c.Relays < 1:
			return fmt.Errorf("p2p config: Relays %d must be >= 1", c.Relays)
		case c.RelayBootDelay < 0 || c.RelayInterval <= 0 || c.RelayBackoff <= 0:
			return fmt.Errorf("p2p config: RelayBootDelay %v must be >= 0, RelayInterval %v and RelayBackoff %v > 0", c.RelayBootDelay, c.RelayInterval, c.RelayBackoff)
		}
	}
	for i, s := range c.Announce {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("p2p config: Announce[%d] %q is not a multiaddr: %w", i, s, err)
		}
	}
	return nil
}

// listenAddrs are the ListenAddrs the host's transports serve: with a PSK,
// TCP only (libp2p's QUIC transport refuses a private network).
func (c Config) listenAddrs() []string {
	if c.PSK == nil {
		return c.ListenAddrs
	}
	var out []string
	for _, s := range c.ListenAddrs {
		if m, err := ma.NewMultiaddr(s); err == nil && isTCPOnly(m) {
			out = append(out, s)
		}
	}
	return out
}

// isTCPOnly: a TCP address with nothing but TCP under it (not QUIC,
// WebTransport or WebRTC over UDP).
func isTCPOnly(a ma.Multiaddr) bool {
	_, errTCP := a.ValueForProtocol(ma.P_TCP)
	_, errUDP := a.ValueForProtocol(ma.P_UDP)
	return errTCP == nil && errUDP != nil
}
