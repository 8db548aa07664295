package node

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// addrBook bounds what gossip may write into the libp2p peerstore (and
// the connection manager's protections): at most maxKeptAddrs addresses
// per peer and maxKeptPeers peers at a time, each kept for keptAddrTTL,
// as long as the peerstore keeps the addresses. A heartbeat is signed by
// the peer it names, but anyone may mint keys, and each new key's
// heartbeat used to add its addresses for an hour. Full, the book turns
// new peers away until entries age out; peers already in are refreshed.
// No I/O; reads no clock (callers pass now). Safe for concurrent use.
type addrBook struct {
	mu    sync.Mutex
	peers map[peer.ID]time.Time // when each peer's entry ages out
}

const (
	// keptAddrTTL is how long gossiped addresses stay in the peerstore.
	keptAddrTTL = time.Hour
	// maxKeptAddrs caps the addresses kept per peer: a host's TCP and
	// QUIC addresses on a few interfaces. Larger: multi-homed peers stay
	// reachable on more of them; smaller: fewer dials wasted on a liar's
	// list.
	maxKeptAddrs = 8
	// maxKeptPeers caps the peers with kept addresses at once: twice a
	// full membership, room for an hour's churn. Larger: bigger swarms
	// with churn; smaller: less a crowd of identities can make us store.
	maxKeptPeers = 2 * gossip.MaxMembers
)

func newAddrBook() *addrBook { return &addrBook{peers: map[peer.ID]time.Time{}} }

// admit decides what Keep records for p: ok is false when the book is
// full of other live peers (record nothing, protect nothing); otherwise
// addrs is at most maxKeptAddrs of the join addresses given, only those
// naming p, without duplicates.
func (b *addrBook) admit(p peer.ID, joinAddrs []string, now time.Time) (addrs []ma.Multiaddr, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, known := b.peers[p]; !known && len(b.peers) >= maxKeptPeers {
		for q, until := range b.peers {
			if now.After(until) {
				delete(b.peers, q)
			}
		}
		if len(b.peers) >= maxKeptPeers {
			return nil, false
		}
	}
	b.peers[p] = now.Add(keptAddrTTL)
	seen := map[string]bool{}
	for _, s := range joinAddrs {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil || ai.ID != p {
			continue
		}
		for _, a := range ai.Addrs {
			if len(addrs) == maxKeptAddrs {
				return addrs, true
			}
			if !seen[string(a.Bytes())] {
				seen[string(a.Bytes())] = true
				addrs = append(addrs, a)
			}
		}
	}
	return addrs, true
}
