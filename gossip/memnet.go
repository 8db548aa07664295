package gossip

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// MemNetwork connects in-process peers with framed streams, for tests of
// the protocols without sockets. Peers can be isolated (crashed or cut
// off): their open streams break and new ones fail.
type MemNetwork struct {
	mu       sync.Mutex
	peers    map[peer.ID]*MemTransport
	isolated map[peer.ID]bool
	// Timeout bounds each Send/Recv, like the per-frame deadlines of the
	// real transport.
	Timeout time.Duration
	// SlowDelay is how long a frame marked Slow takes to go out.
	SlowDelay time.Duration
	// Clock times Timeout and SlowDelay (nil: the wall clock). Set it
	// before the first stream opens; tests that drive the protocols with
	// a clock.Mock give the network the same one.
	Clock clock.Clock
	// Links, when set, times every frame on Clock as a link between two
	// peers would: the frame waits for the sender's uplink to carry it
	// (one uplink per peer, shared by all its streams, at the rate Links
	// gives for that frame), then arrives Latency later. Set it before the
	// first stream opens. Nil: frames arrive at once.
	Links func(from, to peer.ID) Link
	// Sent, when set, is told of every frame delivered, with its size:
	// traffic counts for the simulator.
	Sent func(ev FrameEvent, size int)
	// fault, when set, decides the fate of every frame before delivery,
	// so tests can crash, stall or corrupt a peer at an exact protocol step.
	fault atomic.Pointer[func(FrameEvent) FrameAction]
	// stalled is closed by Release to let stalled senders return.
	stalled chan struct{}
}

// Link is one direction between two peers.
type Link struct {
	Latency time.Duration // one way
	Uplink  float64       // the sender's uplink in bytes per second; 0: unlimited
}

// FrameEvent describes one frame about to be sent.
type FrameEvent struct {
	From, To peer.ID
	Proto    protocol.ID
	Opener   bool // sent by the side that opened the stream
	Seq      int  // index of the frame among those this side sent on the stream
}

// FrameAction is what happens to a frame.
type FrameAction int

const (
	Deliver FrameAction = iota
	Drop                // the frame vanishes; the sender thinks it went out
	Crash               // the sender dies now: isolated, frame lost
	Stall               // the sender hangs until Release; the frame never arrives
	Corrupt             // the frame arrives with its bytes flipped
	Slow                // the frame takes SlowDelay to go out: a slow or congested link
)

// SetFault installs f (nil removes it); safe while streams are running.
func (n *MemNetwork) SetFault(f func(FrameEvent) FrameAction) {
	if f == nil {
		n.fault.Store(nil)
		return
	}
	n.fault.Store(&f)
}

// Release unblocks every stalled sender (call it when a test ends).
func (n *MemNetwork) Release() {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.stalled:
	default:
		close(n.stalled)
	}
}

// NewMemNetwork returns an empty network with a 5 s per-frame timeout
// (memFrameTimeout).
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{peers: map[peer.ID]*MemTransport{}, isolated: map[peer.ID]bool{}, Timeout: memFrameTimeout, stalled: make(chan struct{})}
}

// Add creates a peer on the network.
func (n *MemNetwork) Add(id peer.ID) *MemTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := &MemTransport{net: n, self: id, handlers: map[protocol.ID]func(Stream){}, done: make(chan struct{})}
	n.peers[id] = t
	return t
}

// Isolate cuts p off: its streams break and nobody can open new ones to or from it.
func (n *MemNetwork) Isolate(p peer.ID) {
	n.mu.Lock()
	t := n.peers[p]
	n.isolated[p] = true
	n.mu.Unlock()
	if t != nil {
		t.closeOnce.Do(func() { close(t.done) })
	}
}

func (n *MemNetwork) reachable(a, b peer.ID) (*MemTransport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.isolated[a] || n.isolated[b] {
		return nil, fmt.Errorf("memnet: %s unreachable", b)
	}
	t, ok := n.peers[b]
	if !ok {
		return nil, fmt.Errorf("memnet: no peer %s", b)
	}
	return t, nil
}

// MemTransport is one peer's view of a MemNetwork.
type MemTransport struct {
	net       *MemNetwork
	self      peer.ID
	mu        sync.Mutex
	handlers  map[protocol.ID]func(Stream)
	done      chan struct{} // closed when isolated
	closeOnce sync.Once
	// upFree is when this peer's uplink has carried every frame queued
	// on it (Links only); guarded by mu.
	upFree time.Time
}

func (t *MemTransport) Self() peer.ID { return t.self }

func (t *MemTransport) Handle(proto protocol.ID, h func(Stream)) {
	t.mu.Lock()
	t.handlers[proto] = h
	t.mu.Unlock()
}

func (t *MemTransport) Open(ctx context.Context, p peer.ID, proto protocol.ID) (Stream, error) {
	remote, err := t.net.reachable(t.self, p)
	if err != nil {
		return nil, err
	}
	remote.mu.Lock()
	h := remote.handlers[proto]
	remote.mu.Unlock()
	if h == nil {
		return nil, fmt.Errorf("memnet: %s does not speak %s", p, proto)
	}
	ab := newMemPipe()
	ba := newMemPipe()
	local := &memStream{net: t.net, self: t.self, up: t, proto: proto, opener: true, in: ba, out: ab, remote: p, dead: t.done, peerDead: remote.done}
	far := &memStream{net: t.net, self: p, up: remote, proto: proto, in: ab, out: ba, remote: t.self, dead: remote.done, peerDead: t.done}
	local.timeout.Store(int64(t.net.Timeout))
	far.timeout.Store(int64(t.net.Timeout))
	go h(far)
	return local, nil
}

// memPipe is one direction of a stream: frames plus an end-of-stream or
// reset flag.
type memPipe struct {
	frames chan memFrame
	mu     sync.Mutex
	closed chan struct{}
	once   sync.Once
	reset  bool
}

func newMemPipe() *memPipe {
	return &memPipe{frames: make(chan memFrame, 64), closed: make(chan struct{})}
}

// memFrame is a frame in flight: its bytes and when they arrive (zero:
// at once).
type memFrame struct {
	b      []byte
	arrive time.Time
}

func (p *memPipe) close(reset bool) {
	p.mu.Lock()
	if reset {
		p.reset = true
	}
	p.mu.Unlock()
	p.once.Do(func() { close(p.closed) })
}

type memStream struct {
	net      *MemNetwork
	self     peer.ID
	up       *MemTransport // self's: whose uplink carries what we send
	proto    protocol.ID
	opener   bool
	sent     int
	in, out  *memPipe
	remote   peer.ID
	timeout  atomic.Int64    // time.Duration
	dead     <-chan struct{} // this side isolated
	peerDead <-chan struct{} // the other side isolated
}

var errMemReset = errors.New("memnet: stream reset")

func (s *memStream) Send(frame []byte) error {
	select {
	case <-s.out.closed:
		return errMemReset
	default:
	}
	b := append([]byte(nil), frame...)
	ev := FrameEvent{From: s.self, To: s.remote, Proto: s.proto, Opener: s.opener, Seq: s.sent}
	s.sent++
	if f := s.net.fault.Load(); f != nil {
		switch (*f)(ev) {
		case Drop:
			return nil
		case Crash:
			s.net.Isolate(s.self)
			return errMemReset
		case Stall:
			<-s.net.stalled
			return errMemReset
		case Corrupt:
			for i := range b {
				b[i] ^= 0xA5
			}
		case Slow:
			slow := OrWall(s.net.Clock).Timer(s.net.SlowDelay)
			select {
			case <-slow.C:
			case <-s.dead:
				slow.Stop()
				return errMemReset
			}
		}
	}
	var arrive time.Time
	if s.net.Links != nil {
		var err error
		if arrive, err = s.carry(len(b)); err != nil {
			return err
		}
	}
	timer := OrWall(s.net.Clock).Timer(time.Duration(s.timeout.Load()))
	defer timer.Stop()
	select {
	case s.out.frames <- memFrame{b, arrive}:
		if s.net.Sent != nil {
			s.net.Sent(ev, len(b))
		}
		return nil
	case <-s.out.closed:
		return errMemReset
	case <-s.dead:
		return errMemReset
	case <-s.peerDead:
		return errMemReset
	case <-timer.C:
		return errors.New("memnet: send timeout")
	}
}

// carry waits until the sender's uplink has carried size bytes after
// what is queued on it, and returns when they arrive at the other end.
func (s *memStream) carry(size int) (time.Time, error) {
	clk := OrWall(s.net.Clock)
	l := s.net.Links(s.self, s.remote)
	s.up.mu.Lock()
	now := clk.Now()
	sent := now
	if s.up.upFree.After(sent) {
		sent = s.up.upFree
	}
	if l.Uplink > 0 {
		sent = sent.Add(time.Duration(float64(size) / l.Uplink * float64(time.Second)))
	}
	s.up.upFree = sent
	s.up.mu.Unlock()
	if d := sent.Sub(now); d > 0 {
		t := clk.Timer(d)
		select {
		case <-t.C:
		case <-s.dead:
			t.Stop()
			return time.Time{}, errMemReset
		}
	}
	return sent.Add(l.Latency), nil
}

func (s *memStream) Recv(max int) ([]byte, error) {
	timer := OrWall(s.net.Clock).Timer(time.Duration(s.timeout.Load()))
	defer timer.Stop()
	select {
	case f := <-s.in.frames:
		return s.arrived(f, max)
	case <-s.in.closed:
		// Deliver frames sent before the close.
		select {
		case f := <-s.in.frames:
			return s.arrived(f, max)
		default:
		}
		s.in.mu.Lock()
		reset := s.in.reset
		s.in.mu.Unlock()
		if reset {
			return nil, errMemReset
		}
		return nil, errors.New("memnet: EOF")
	case <-s.dead:
		return nil, errMemReset
	case <-s.peerDead:
		return nil, errMemReset
	case <-timer.C:
		return nil, errors.New("memnet: recv timeout")
	}
}

func (s *memStream) CloseWrite() error   { s.out.close(false); return nil }
func (s *memStream) Close() error        { s.out.close(false); return nil }
func (s *memStream) Reset() error        { s.out.close(true); s.in.close(true); return nil }
func (s *memStream) RemotePeer() peer.ID { return s.remote }

func (s *memStream) SetTimeout(d time.Duration) { s.timeout.Store(int64(d)) }

// arrived waits for f's latency (Links) and checks it against the cap.
func (s *memStream) arrived(f memFrame, max int) ([]byte, error) {
	if !f.arrive.IsZero() {
		clk := OrWall(s.net.Clock)
		if d := f.arrive.Sub(clk.Now()); d > 0 {
			t := clk.Timer(d)
			select {
			case <-t.C:
			case <-s.dead:
				t.Stop()
				return nil, errMemReset
			}
		}
	}
	if len(f.b) > max {
		return nil, fmt.Errorf("memnet: frame of %d bytes over cap %d", len(f.b), max)
	}
	return f.b, nil
}
