package p2p

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ErrRelayedOnly: the peer is connected only through a relay, and no hole
// punch made a direct connection in the time one takes.
var ErrRelayedOnly = errors.New("connected only through a relay; no hole punch made a direct connection")

// NewDirectStream opens a stream that must not cross a relay. libp2p's
// NewStream, given only a relayed connection, waits for a hole punch
// until ctx ends, however long ago the punch failed: a round's budget,
// doubled by every failure, then went to a wait that could not succeed
// (48 s at a time behind two NATs that drop punches). A punch is tried
// when the relayed connection opens, so the wait is bounded by punchWait
// from the newest relayed connection's opening (or from now, when a dial
// must find a connection first); past it we fail at once.
func (h *Host) NewDirectStream(ctx context.Context, p peer.ID, punchWait time.Duration, pids ...protocol.ID) (network.Stream, error) {
	conns := h.Network().ConnsToPeer(p)
	var newest time.Time
	for _, c := range conns {
		if !c.Stat().Limited {
			return h.NewStream(ctx, p, pids...)
		}
		if o := c.Stat().Opened; o.After(newest) {
			newest = o
		}
	}
	if len(conns) == 0 {
		// A dial: it may find a direct path, or only a relayed one and
		// then wait for the punch it triggers, which is as long as a punch
		// over a connection that opens now is given.
		newest = time.Now()
	}
	wait := time.Until(newest.Add(punchWait))
	if wait <= 0 {
		if len(conns) == 0 {
			return h.NewStream(ctx, p, pids...) // no wait asked for
		}
		return nil, fmt.Errorf("%s: %w", p, ErrRelayedOnly)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	s, err := h.NewStream(wctx, p, pids...)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil && h.Relayed(p) {
		return nil, fmt.Errorf("%s: %w (waited %v)", p, ErrRelayedOnly, wait.Round(time.Millisecond))
	}
	return s, err
}

// RetryPunch hangs up on p and dials it again through the relay, when p is
// connected only through one whose newest connection is older than after:
// p's side then sees a new inbound relayed connection and tries another
// hole punch (libp2p tries one per such connection, up to three attempts,
// and never again). It reports whether it tried.
func (h *Host) RetryPunch(ctx context.Context, p peer.ID, after time.Duration) (bool, error) {
	conns := h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return false, nil
	}
	for _, c := range conns {
		if !c.Stat().Limited || time.Since(c.Stat().Opened) < after {
			return false, nil
		}
	}
	addrs := h.Peerstore().Addrs(p)
	if err := h.Network().ClosePeer(p); err != nil {
		return true, err
	}
	return true, h.Host.Connect(network.WithAllowLimitedConn(ctx, "hole punch again"), peer.AddrInfo{ID: p, Addrs: addrs})
}
