package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// admitted is the set of peers a hello with was accepted, in either
// direction, and who have not disconnected or been refused since. Only
// they may open a swarmtrain stream (gated), have gossip delivered, and
// so count as members, voters, donors or redial targets. A peer that
// reconnects is a stranger again until it greets us or we greet it: a
// new connection may be a new process with another run.
type admitted struct {
	mu    sync.Mutex
	max   int
	peers map[peer.ID]struct{}
}

// maxAdmitted bounds the admitted set: far more peers than a swarm's
// rounds can use, few enough that a crowd of identities cannot grow it
// without bound.
const maxAdmitted = 4096

func newAdmitted(max int) *admitted {
	return &admitted{max: max, peers: map[peer.ID]struct{}{}}
}

// add admits p; it fails when the set is full (p stays a stranger, and
// the hello is refused with the error).
func (a *admitted) add(p peer.ID) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.peers[p]; !ok && len(a.peers) >= a.max {
		return fmt.Errorf("this node admits no more peers (%d already)", a.max)
	}
	a.peers[p] = struct{}{}
	return nil
}

func (a *admitted) has(p peer.ID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.peers[p]
	return ok
}

func (a *admitted) remove(p peer.ID) {
	a.mu.Lock()
	delete(a.peers, p)
	a.mu.Unlock()
}

// gatedNetwork is a Network whose protocols, hello excepted, serve only
// admitted peers: a stream from anyone else is reset before its handler
// reads a byte. Every handler goes through Handle, so the gate holds for
// the libp2p host and the in-process swarm alike, and for protocols
// added later.
type gatedNetwork struct {
	Network
	admitted func(peer.ID) bool
	// contact, when set, is asked about a stream from a peer not admitted
	// yet, before it is reset: it may greet the peer and report whether
	// it is admitted now (see Node.onContact).
	contact func(peer.ID) bool
}

func (g gatedNetwork) Handle(proto protocol.ID, h func(gossip.Stream)) {
	if proto == gossip.ProtoHello {
		g.Network.Handle(proto, h)
		return
	}
	g.Network.Handle(proto, func(s gossip.Stream) {
		if p := s.RemotePeer(); !g.admitted(p) && (g.contact == nil || !g.contact(p)) {
			s.Reset()
			return
		}
		h(s)
	})
}

// greeter paces the hellos we send to authors of gossip we have not
// admitted: at most one in flight per peer, at most maxGreeting in all,
// and a peer is greeted again only after a backoff that doubles when
// hellos to it fail or are refused (greetMin … greetMax). No I/O; the
// node greets. Its table is bounded by maxAdmitted: when full, expired
// entries are dropped, and if none has expired nobody new is greeted
// (their next heartbeat tries again).
type greeter struct {
	mu    sync.Mutex
	peers map[peer.ID]*greetState
	busy  int // hellos in flight
}

type greetState struct {
	next     time.Time // earliest next hello
	backoff  time.Duration
	inFlight bool
}

const (
	greetMin    = 2 * time.Second
	greetMax    = time.Minute
	maxGreeting = 8
)

func newGreeter() *greeter { return &greeter{peers: map[peer.ID]*greetState{}} }

// start reports whether to greet p now, and if so marks it in flight.
func (g *greeter) start(p peer.ID, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy >= maxGreeting {
		return false
	}
	s, ok := g.peers[p]
	if !ok {
		if len(g.peers) >= maxAdmitted {
			g.prune(now)
			if len(g.peers) >= maxAdmitted {
				return false
			}
		}
		s = &greetState{}
		g.peers[p] = s
	}
	if s.inFlight || now.Before(s.next) {
		return false
	}
	s.inFlight = true
	g.busy++
	return true
}

// done records a hello's outcome: a success forgets p (a later
// disconnect makes it a stranger afresh), a failure backs off.
func (g *greeter) done(p peer.ID, ok bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, found := g.peers[p]
	if !found || !s.inFlight {
		return
	}
	g.busy--
	if ok {
		delete(g.peers, p)
		return
	}
	s.inFlight = false
	s.backoff = min(max(2*s.backoff, greetMin), greetMax)
	s.next = now.Add(s.backoff)
}

// inFlight reports whether a hello to p is under way.
func (g *greeter) inFlight(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.peers[p]
	return ok && s.inFlight
}

// prune drops entries whose backoff has ended and that are not in flight.
func (g *greeter) prune(now time.Time) {
	for p, s := range g.peers {
		if !s.inFlight && !now.Before(s.next) {
			delete(g.peers, p)
		}
	}
}

// stranger is the bus gate's report of a valid message by a peer we have
// not admitted. A heartbeat gets its author greeted (asynchronously,
// paced by the greeter): if it is on our run, the hello admits it and its
// next heartbeat counts. Until then it is nobody.
func (n *Node) stranger(p peer.ID, m gossip.Message) {
	if m.Kind != gossip.KindHeartbeat || m.Heartbeat.Leaving || p == n.ID() || !n.greets.start(p, n.clock.Now()) {
		return
	}
	// Gossip may have come through a third peer: dial it directly.
	n.net.Learn(p, m.Heartbeat.Addrs)
	go n.greet(p)
}

// gossipPenalty is the bus gate's penalty: a peer serving an all-reduce
// penalty here (caught sending different results, or a false report)
// also loses its standing in our gossip mesh while it lasts.
func (n *Node) gossipPenalty(p peer.ID) float64 {
	if n.av.Penalised(p) {
		return gossip.MisbehavingPenalty
	}
	return 0
}

// onContact admits, if it can, a peer that opened a swarm stream before
// we admitted it. Admission is each node's own, so a round's assembler
// may list a member that the others have only heard of: its first part
// or report then reaches a member that has not greeted it yet, and
// resetting it would fail the round for everyone. So the stream waits
// (at most contactWait) for a hello: ours, if the greeter lets us start
// one now, or the one already in flight. Nothing is read from the stream
// meanwhile; a peer that is not on our run, or does not answer, is
// reset as before, and the greeter's backoff paces how often it can
// make us ask.
func (n *Node) onContact(p peer.ID) bool {
	if p == n.ID() {
		return false
	}
	ctx, cancel := n.clock.WithTimeout(context.Background(), contactWait)
	defer cancel()
	if n.greets.start(p, n.clock.Now()) {
		err := n.adm.Greet(ctx, n.net, p)
		n.greets.done(p, err == nil, n.clock.Now())
		if err == nil {
			n.log.Info("admitted", "peer", p, "on", "contact")
		}
	}
	for !n.admitted.has(p) {
		if ctx.Err() != nil || !n.greets.inFlight(p) {
			return n.admitted.has(p)
		}
		n.sleep(ctx, 10*time.Millisecond)
	}
	return true
}

// contactWait bounds how long a stream from a peer not admitted yet
// waits for a hello: a round's first frames are waited for longer.
const contactWait = 2 * time.Second

// greet says hello to p after a reconnect or gossip of its, records
// the outcome with the greeter, and reports whether p was admitted. A
// refusal is handled by onHello.
func (n *Node) greet(p peer.ID) bool {
	ctx, cancel := n.clock.WithTimeout(context.Background(), n.cfg.FrameTimeout)
	defer cancel()
	err := n.adm.Greet(ctx, n.net, p)
	n.greets.done(p, err == nil, n.clock.Now())
	if err == nil {
		n.log.Info("admitted", "peer", p)
	} else {
		n.log.Debug("hello failed", "peer", p, "err", err)
	}
	return err == nil
}

// lost forgets what we knew of p when its last connection closes: it is
// no longer admitted (a reconnect must greet again) nor a live member.
func (n *Node) lost(p peer.ID) {
	n.admitted.remove(p)
	n.view.Remove(p)
}
