package p2p

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
)

// DHTPrefix is the protocol prefix of swarmtrain's Kademlia DHT: its own
// network, apart from IPFS's, so that our peers' routing tables hold only
// swarmtrain peers and a lookup never wanders into the public DHT.
const DHTPrefix = "/swarmtrain"

// MDNSService is the mDNS service name swarmtrain hosts announce on the
// local network. It is the same for every swarm: a swarm's run and key
// stay off the wire, and a peer of another swarm that answers fails the
// key's handshake (or the hello) and is ignored.
const MDNSService = "_swarmtrain._udp"

// Rendezvous is the DHT namespace under which the peers of run advertise
// themselves: a hash of the run ID, so the DHT's records do not spell the
// run out.
func Rendezvous(run string) string {
	sum := sha256.Sum256([]byte("swarmtrain rendezvous\x00" + run))
	return "swarmtrain/" + hex.EncodeToString(sum[:16])
}

// DiscoveryConfig says how a host looks for the peers of its run.
type DiscoveryConfig struct {
	// Namespace is the DHT rendezvous (Rendezvous of the run).
	Namespace string
	// MDNS announces the host on the local network and listens for
	// others' announcements.
	MDNS bool
	// Found is called with every peer discovered (never the host itself),
	// possibly several times and from several goroutines; it must not
	// block for long. Whoever it names may lie: Found decides whether to
	// dial.
	Found func(peer.AddrInfo)
	// FindMin and FindMax pace the DHT lookups of the rendezvous: the
	// first after FindMin, each next one twice as late, up to FindMax,
	// so a new node finds the swarm fast and a settled one costs little.
	FindMin, FindMax time.Duration
	// AdvertiseEvery is how often the host advertises itself under the
	// rendezvous: often enough that the records live on peers still up
	// after churn (a record sits on the few peers closest to the key).
	AdvertiseEvery time.Duration
}

// DefaultDiscoveryConfig is the node's discovery: mDNS on, lookups from
// every 2 s up to every 30 s, advertising every minute.
func DefaultDiscoveryConfig(run string) DiscoveryConfig {
	return DiscoveryConfig{Namespace: Rendezvous(run), MDNS: true, FindMin: 2 * time.Second, FindMax: 30 * time.Second, AdvertiseEvery: time.Minute}
}

// Discovery runs a host's peer discovery: a Kademlia DHT private to
// swarmtrain (DHTPrefix) in which the run's peers advertise themselves
// under its rendezvous, so any one live peer leads to the rest, and
// mDNS on the local network, which needs no peer at all. The DHT is a
// server (answers queries) unless AutoNAT finds the host unreachable.
// Close stops it.
type Discovery struct {
	dht    *dht.IpfsDHT
	mdns   interface{ Close() error }
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartDiscovery starts discovery on h, which must be listening already
// (mDNS announces the addresses it has at start).
func StartDiscovery(h *Host, cfg DiscoveryConfig) (*Discovery, error) {
	if cfg.Found == nil || cfg.Namespace == "" || cfg.FindMin <= 0 || cfg.FindMax < cfg.FindMin || cfg.AdvertiseEvery <= 0 {
		return nil, errors.New("p2p: discovery config needs Found, Namespace, 0 < FindMin <= FindMax and AdvertiseEvery > 0")
	}
	kad, err := dht.New(h.Host, dht.ProtocolPrefix(DHTPrefix), dht.Mode(dht.ModeAutoServer),
		// Only provider records: no values, and a small routing table
		// refresh, for swarms of tens of peers.
		dht.DisableValues(), dht.RoutingTableRefreshPeriod(time.Minute))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Discovery{dht: kad, cancel: cancel}
	found := func(ai peer.AddrInfo) {
		if ai.ID != h.ID() && ai.ID != "" {
			cfg.Found(ai)
		}
	}
	if cfg.MDNS {
		m := mdns.NewMdnsService(h.Host, MDNSService, notifee(found))
		if err := m.Start(); err != nil {
			cancel()
			kad.Close()
			return nil, err
		}
		d.mdns = m
	}
	rd := drouting.NewRoutingDiscovery(kad)
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.advertise(ctx, rd, cfg)
	}()
	go func() {
		defer d.wg.Done()
		d.find(ctx, rd, cfg, found)
	}()
	return d, nil
}

type notifee func(peer.AddrInfo)

func (f notifee) HandlePeerFound(ai peer.AddrInfo) { f(ai) }

// advertise keeps the host's provider record for the rendezvous on the
// DHT. Until the routing table has peers, Advertise fails; it is retried
// every FindMin.
func (d *Discovery) advertise(ctx context.Context, rd *drouting.RoutingDiscovery, cfg DiscoveryConfig) {
	for {
		wait := cfg.AdvertiseEvery
		if _, err := rd.Advertise(ctx, cfg.Namespace); err != nil {
			wait = cfg.FindMin
		}
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// find looks the rendezvous up, ever less often, and reports the peers
// it lists.
func (d *Discovery) find(ctx context.Context, rd *drouting.RoutingDiscovery, cfg DiscoveryConfig, found func(peer.AddrInfo)) {
	wait := cfg.FindMin
	for sleepCtx(ctx, wait) {
		wait = min(2*wait, cfg.FindMax)
		if len(d.dht.RoutingTable().ListPeers()) == 0 {
			wait = cfg.FindMin // nobody to ask yet
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, cfg.FindMax)
		ch, err := rd.FindPeers(lctx, cfg.Namespace)
		if err == nil {
			// Reported connected or not: the lookup itself may have
			// dialled them.
			for ai := range ch {
				found(ai)
			}
		}
		cancel()
	}
}

// RoutingPeers is how many peers the DHT's routing table holds.
func (d *Discovery) RoutingPeers() int { return d.dht.RoutingTable().Size() }

// Close stops discovery; the host stays up.
func (d *Discovery) Close() error {
	d.cancel()
	var errs []error
	if d.mdns != nil {
		errs = append(errs, d.mdns.Close())
	}
	d.wg.Wait()
	errs = append(errs, d.dht.Close())
	return errors.Join(errs...)
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
