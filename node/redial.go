package node

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// redialer remembers the swarm's peers and says when to dial the ones we
// lost. libp2p never redials on its own: without this, a network cut
// that outlives the connections splits the swarm for good, and a peer
// behind a healed link would train alone. No I/O; the caller dials. It
// remembers at most maxRedialPeers: a new peer that finds it full (after
// the forgotten ones go) is not remembered, and the peers already there
// are never displaced.
type redialer struct {
	mu     sync.Mutex
	forget time.Duration // a peer unheard of this long is given up
	peers  map[peer.ID]*redialState
}

type redialState struct {
	lastHeard time.Time
	next      time.Time     // earliest next dial
	backoff   time.Duration // doubles per failed dial, 1 s … 8 s
	dialing   bool
	hungUp    bool // we closed its silent connection during this silence
}

const (
	redialMin = time.Second
	redialMax = 8 * time.Second
	// maxRedialPeers caps the peers remembered for redialing: as many as
	// a membership holds (gossip.MaxMembers). Larger: more lost peers
	// redialled after a cut; smaller: fewer dials a crowd of identities
	// can make us keep making.
	maxRedialPeers = gossip.MaxMembers
)

func newRedialer(forget time.Duration) *redialer {
	return &redialer{forget: forget, peers: map[peer.ID]*redialState{}}
}

// heard records that p is alive and on our run.
func (r *redialer) heard(p peer.ID, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.peers[p]
	if !ok {
		if len(r.peers) >= maxRedialPeers {
			r.forgetLocked(now)
			if len(r.peers) >= maxRedialPeers {
				return
			}
		}
		s = &redialState{}
		r.peers[p] = s
	}
	if now.Sub(s.lastHeard) > silentFor {
		// Back after a silence (a cut healed somewhere): dial now, not
		// when the backoff ends. A peer heard all along but not dialable
		// (behind NAT) keeps its backoff.
		s.next = time.Time{}
	}
	s.lastHeard = now
	s.hungUp = false
}

// hangUp returns the peers whose connection is open but silent for
// longer than silentConn, once per silence. After a cut, a connection can
// look open for a minute while TCP's retransmission backoff grows to
// seconds; closing it lets a fresh dial get through as soon as the link
// is back, instead of waiting out that backoff.
func (r *redialer) hangUp(now time.Time, connected func(peer.ID) bool) []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []peer.ID
	for p, s := range r.peers {
		if !s.hungUp && now.Sub(s.lastHeard) > silentConn && connected(p) {
			s.hungUp = true
			out = append(out, p)
		}
	}
	return out
}

// silentFor is how long without news makes a peer's next word a sign it
// is reachable again.
const silentFor = 3 * time.Second

// silentConn is how long an open connection may carry nothing from its
// peer before we hang up on it; well past the peer expiry (a CPU-starved
// peer is slow, not gone).
const silentConn = 10 * time.Second

// left forgets p: it said goodbye.
func (r *redialer) left(p peer.ID) {
	r.mu.Lock()
	delete(r.peers, p)
	r.mu.Unlock()
}

// due returns the peers to dial now: known, not connected, not dialled
// already, past their backoff. It marks them as being dialled.
func (r *redialer) due(now time.Time, connected func(peer.ID) bool) []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgetLocked(now)
	var out []peer.ID
	for p, s := range r.peers {
		if s.dialing || now.Before(s.next) {
			continue
		}
		if connected(p) {
			s.backoff = 0
			continue
		}
		s.dialing = true
		out = append(out, p)
	}
	return out
}

// forgetLocked drops the peers unheard of for longer than forget.
func (r *redialer) forgetLocked(now time.Time) {
	for p, s := range r.peers {
		if now.Sub(s.lastHeard) > r.forget {
			delete(r.peers, p)
		}
	}
}

// dialed records a dial's outcome and schedules the next try on failure.
func (r *redialer) dialed(p peer.ID, ok bool, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, found := r.peers[p]
	if !found {
		return
	}
	s.dialing = false
	if ok {
		s.backoff = 0
		s.next = time.Time{}
		return
	}
	s.backoff = min(max(2*s.backoff, redialMin), redialMax)
	s.next = now.Add(s.backoff)
}

// redial reconnects to lost swarm peers until ctx ends.
func (n *Node) redial(ctx context.Context) {
	t := n.clock.Ticker(redialMin / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range n.redials.hangUp(n.clock.Now(), n.net.Connected) {
			n.log.Info("hanging up on a silent connection", "peer", p)
			n.net.ClosePeer(p)
		}
		for _, p := range n.redials.due(n.clock.Now(), n.net.Connected) {
			go func() {
				dctx, cancel := n.clock.WithTimeout(ctx, 5*time.Second)
				err := n.net.Redial(dctx, p)
				cancel()
				n.redials.dialed(p, err == nil, n.clock.Now())
				if err == nil {
					n.log.Info("reconnected", "peer", p)
					// A new connection is a stranger's until a hello.
					if n.greets.start(p, n.clock.Now()) {
						n.greet(p)
					}
				}
			}()
		}
	}
}

// puncher is a network that can make a relayed peer try another hole
// punch (the libp2p one can; the in-memory one has no relays).
type puncher interface {
	RetryPunch(ctx context.Context, p peer.ID, after time.Duration) (bool, error)
}

func (t *hostNetwork) RetryPunch(ctx context.Context, p peer.ID, after time.Duration) (bool, error) {
	return t.h.RetryPunch(ctx, p, after)
}

const (
	// punchRetryEvery is how often the swarm's relayed-only peers are
	// looked at; punchRetries is how many more punches a pair tries.
	// More: two home nodes get a direct link after more bad luck; fewer:
	// less relay traffic and fewer brief hang-ups on their digests.
	punchRetryEvery = 20 * time.Second
	punchRetries    = 5
)

// punchAgain makes the swarm's peers that we reach only through a relay
// try another hole punch: libp2p tries one when a relayed connection
// opens and never again, so a punch lost to a loaded machine left two
// home nodes relayed to the end of the run (TestHomeNodesPunch under
// load). It redials them through the relay, which makes their side
// punch; one side of each pair does it (the lower peer ID), at most
// punchRetries times.
func (n *Node) punchAgain(ctx context.Context) {
	pn, ok := n.net.(puncher)
	if !ok {
		return
	}
	tries := map[peer.ID]int{}
	t := n.clock.Ticker(punchRetryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, m := range n.view.Live(n.clock.Now()) {
			if m.Peer >= n.ID() || tries[m.Peer] >= punchRetries {
				continue
			}
			rctx, cancel := n.clock.WithTimeout(ctx, 10*time.Second)
			tried, err := pn.RetryPunch(rctx, m.Peer, punchWait)
			cancel()
			if tried {
				if len(tries) >= maxRedialPeers {
					clear(tries) // identities come and go: stay bounded
				}
				tries[m.Peer]++
				n.log.Info("relayed only: dialling again for another hole punch", "peer", m.Peer, "try", tries[m.Peer], "err", err)
			}
		}
	}
}
