package node

import (
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// Traffic is what a node sent, split into the swarm's bulk (all-reduce
// parts and averages, their repairs and cross-check reports, state and
// dataset downloads it served) and its control traffic: everything else
// (gossipsub, identify, hello, matchmaking, ping, AutoNAT, DHT, relay,
// and protocol negotiation). Stream payload bytes, without encryption
// and muxer overhead.
type Traffic struct {
	ControlBytes int64 `json:"control_bytes"`
	// ByProtocol is every protocol's share of the bytes sent ("" is
	// protocol negotiation before a stream's protocol was known).
	ByProtocol map[string]int64 `json:"sent_by_protocol,omitempty"`
	// Gossip is gossipsub's share by content: "msg:<kind>" (our messages
	// and the ones we relayed) and each kind of gossipsub control.
	Gossip map[string]gossip.SentStat `json:"gossip_sent,omitempty"`
}

// bulkProtocols carry the model's bytes; every other protocol is control.
var bulkProtocols = map[protocol.ID]bool{
	gossip.ProtoAllReduce: true, gossip.ProtoPart: true, gossip.ProtoDigest: true,
	gossip.ProtoState: true, gossip.ProtoData: true,
}

// protocolCounter is a network that counts the bytes it sent per
// protocol (the libp2p one; the in-memory one does not).
type protocolCounter interface {
	SentByProtocol() map[protocol.ID]int64
}

// gossipCounter is a bus that counts what it sent by content.
type gossipCounter interface {
	Sent() map[string]gossip.SentStat
}

// traffic is what this node sent so far, or nil where its network does
// not count it.
func (n *Node) traffic() *Traffic {
	net := n.net
	if g, ok := net.(gatedNetwork); ok {
		net = g.Network
	}
	pc, ok := net.(protocolCounter)
	if !ok {
		return nil
	}
	t := &Traffic{ByProtocol: map[string]int64{}}
	for p, b := range pc.SentByProtocol() {
		t.ByProtocol[string(p)] = b
		if !bulkProtocols[p] {
			t.ControlBytes += b
		}
	}
	if gc, ok := n.bus.(gossipCounter); ok {
		t.Gossip = gc.Sent()
	}
	return t
}
