// Package gossiptest holds what the tests of gossip's subpackages share:
// in-process peers and random vectors. (Package gossip's own tests cannot
// import it: it imports gossip.)
package gossiptest

import (
	"math/rand/v2"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// MemPeers is k peers on one new in-process network, with distinct
// deterministic IDs (testutil.PeerID).
func MemPeers(k int) (*gossip.MemNetwork, []*gossip.MemTransport, []peer.ID) {
	net := gossip.NewMemNetwork()
	var ts []*gossip.MemTransport
	var ids []peer.ID
	for i := range k {
		id := testutil.PeerID(i)
		ts = append(ts, net.Add(id))
		ids = append(ids, id)
	}
	return net, ts, ids
}

// RandVec is n standard normal values from r.
func RandVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}
