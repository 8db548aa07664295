package gossip

import (
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
)

// sentTally counts the bytes of the gossipsub RPCs this peer queues for
// sending, by what they carry: the messages of each kind (ours and the
// ones we relay) and each kind of control (ihave, iwant, graft, prune,
// idontwant, subscriptions). Protobuf sizes without the varint length
// prefix of each RPC: within a few bytes per RPC of what goes out.
type sentTally struct {
	mu    sync.Mutex
	bytes map[string]int64
	msgs  map[string]int64
}

// SentStat is what a Bus sent of one kind of gossipsub content.
type SentStat struct {
	Bytes int64 `json:"bytes"`
	Count int64 `json:"count"` // messages, or control entries
}

func (t *sentTally) add(kind string, bytes int, count int) {
	if t.bytes == nil {
		t.bytes, t.msgs = map[string]int64{}, map[string]int64{}
	}
	t.bytes[kind] += int64(bytes)
	t.msgs[kind] += int64(count)
}

func (t *sentTally) SendRPC(rpc *pubsub.RPC, _ peer.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range rpc.Publish {
		topic := m.GetTopic()
		t.add("msg:"+topic[strings.LastIndexByte(topic, '/')+1:], proto.Size(m), 1)
	}
	if len(rpc.Subscriptions) > 0 {
		n := 0
		for _, s := range rpc.Subscriptions {
			n += proto.Size(s)
		}
		t.add("subscriptions", n, len(rpc.Subscriptions))
	}
	c := rpc.Control
	if c == nil {
		return
	}
	for _, x := range c.Ihave {
		t.add("ihave", proto.Size(x), len(x.MessageIDs))
	}
	for _, x := range c.Iwant {
		t.add("iwant", proto.Size(x), len(x.MessageIDs))
	}
	for _, x := range c.Graft {
		t.add("graft", proto.Size(x), 1)
	}
	for _, x := range c.Prune {
		t.add("prune", proto.Size(x), 1)
	}
	for _, x := range c.Idontwant {
		t.add("idontwant", proto.Size(x), len(x.MessageIDs))
	}
}

// stats copies the tally.
func (t *sentTally) stats() map[string]SentStat {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]SentStat, len(t.bytes))
	for k, b := range t.bytes {
		out[k] = SentStat{Bytes: b, Count: t.msgs[k]}
	}
	return out
}

var _ pubsub.RawTracer = (*sentTally)(nil)

func (*sentTally) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (*sentTally) OnClosedOutboundStream(peer.ID)                       {}
func (*sentTally) Join(string)                                          {}
func (*sentTally) Leave(string)                                         {}
func (*sentTally) Graft(peer.ID, string)                                {}
func (*sentTally) Prune(peer.ID, string)                                {}
func (*sentTally) ValidateMessage(*pubsub.Message)                      {}
func (*sentTally) DeliverMessage(*pubsub.Message)                       {}
func (*sentTally) RejectMessage(*pubsub.Message, string)                {}
func (*sentTally) DuplicateMessage(*pubsub.Message)                     {}
func (*sentTally) ThrottlePeer(peer.ID)                                 {}
func (*sentTally) RecvRPC(*pubsub.RPC)                                  {}
func (*sentTally) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (*sentTally) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (*sentTally) UndeliverableMessage(*pubsub.Message)                 {}
