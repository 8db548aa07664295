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
// gets per-frame deadlines and size-capped frames from package p2p. A
// frame may take timeout plus its size at minRate (bytes/s; 0: timeout
// alone), so large parts are not cut off on a slow link.
type hostTransport struct {
	h       *p2p.Host
	timeout time.Duration
	minRate float64
}

func (t hostTransport) wrap(s network.Stream) *p2p.Stream {
	st := p2p.NewStream(s, t.timeout)
	st.SetMinRate(t.minRate)
	return st
}

func (t hostTransport) Self() peer.ID { return t.h.ID() }

func (t hostTransport) Open(ctx context.Context, p peer.ID, proto protocol.ID) (gossip.Stream, error) {
	s, err := t.h.NewStream(ctx, p, proto)
	if err != nil {
		return nil, err
	}
	return t.wrap(s), nil
}

func (t hostTransport) Handle(proto protocol.ID, h func(gossip.Stream)) {
	t.h.SetStreamHandler(proto, func(s network.Stream) { h(t.wrap(s)) })
}
