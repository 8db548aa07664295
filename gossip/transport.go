package gossip

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Stream is a bidirectional, framed, deadline-bounded stream to one peer.
// Implementations set a deadline per frame, so a dead peer costs at most
// one timeout, and cap a frame's size before allocating it.
type Stream interface {
	Send(frame []byte) error
	Recv(max int) ([]byte, error)
	// CloseWrite says "no more frames from me"; the peer can still answer.
	CloseWrite() error
	Close() error
	// Reset aborts the stream on both sides; use it on any error.
	Reset() error
	// SetTimeout replaces the per-frame timeout for the frames that
	// follow: a reply that comes only after other peers' work (a round's
	// result) is given the time that work may take.
	SetTimeout(d time.Duration)
	RemotePeer() peer.ID
}

// Transport is the one seam between the averaging protocols and the
// network: libp2p in production (see package node), MemNetwork in tests.
type Transport interface {
	Self() peer.ID
	// Open opens a stream to p speaking proto.
	Open(ctx context.Context, p peer.ID, proto protocol.ID) (Stream, error)
	// Handle registers h for inbound streams of proto; h owns the stream.
	Handle(proto protocol.ID, h func(Stream))
}

// Protocol IDs of the stream protocols.
const (
	ProtoHello     protocol.ID = "/swarmtrain/hello/1"
	ProtoMatch     protocol.ID = "/swarmtrain/match/1"
	ProtoAllReduce protocol.ID = "/swarmtrain/allreduce/3" // 2: the owner confirms receipt of a part; 3: parts and averages in chunks
	ProtoState     protocol.ID = "/swarmtrain/state/2"     // chunked, pinned, per-chunk hashes
	ProtoPart      protocol.ID = "/swarmtrain/part/2"      // repair: a part's final bytes from a fellow member, in chunks
	ProtoDigest    protocol.ID = "/swarmtrain/digest/1"    // a member's digests of the round's results, cross-checked before applying
	ProtoData      protocol.ID = "/swarmtrain/data/1"      // the run's dataset files, chunked, for a node without them
)
