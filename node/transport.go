package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/p2p"
)

// hostTransport adapts a libp2p host to gossip.Transport: every stream
// gets per-frame deadlines and size-capped frames from package p2p.
type hostTransport struct {
	h       *p2p.Host
	timeout time.Duration
}

func (t hostTransport) Self() peer.ID { return t.h.ID() }

func (t hostTransport) Open(ctx context.Context, p peer.ID, proto protocol.ID) (gossip.Stream, error) {
	s, err := t.h.NewStream(ctx, p, proto)
	if err != nil {
		return nil, err
	}
	return p2p.NewStream(s, t.timeout), nil
}

func (t hostTransport) Handle(proto protocol.ID, h func(gossip.Stream)) {
	t.h.SetStreamHandler(proto, func(s network.Stream) { h(p2p.NewStream(s, t.timeout)) })
}
