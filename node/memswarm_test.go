package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// memSwarm is an in-process network of nodes: streams over
// gossip.MemNetwork, a bus that floods each connected component (as
// gossipsub would), connections made by Connect and Redial, and a
// partition that cuts the swarm in two until Heal.
type memSwarm struct {
	streams *gossip.MemNetwork
	rng     *rand.ChaCha8
	mu      sync.Mutex
	nodes   map[peer.ID]*memNode
	side    map[peer.ID]bool // partition: peers on different sides cannot talk
	// beforeOpen, when set, runs before every stream is opened (from,
	// to, protocol), with no lock held: every round opens streams, so a
	// test can stop the world at a step there instead of racing the
	// swarm from outside.
	beforeOpen atomic.Pointer[func(from, to peer.ID, proto protocol.ID)]
}

func newMemSwarm() *memSwarm {
	streams := gossip.NewMemNetwork()
	streams.Timeout = memFrameTimeout
	return &memSwarm{streams: streams, rng: rand.NewChaCha8([32]byte{1}), nodes: map[peer.ID]*memNode{}}
}

// memFrameTimeout is the in-process streams' per-frame timeout, the
// nodes' FrameTimeout.
const memFrameTimeout = 2 * time.Second

// add makes a new peer with a real (seeded) peer ID.
func (s *memSwarm) add() *memNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, pub, err := crypto.GenerateEd25519Key(s.rng)
	if err != nil {
		panic(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		panic(err)
	}
	n := &memNode{sw: s, MemTransport: s.streams.Add(id), conns: map[peer.ID]bool{}}
	s.nodes[id] = n
	return n
}

// cut reports whether a and b are on different sides of a partition.
// Called with s.mu held.
func (s *memSwarm) cut(a, b peer.ID) bool {
	return s.side != nil && s.side[a] != s.side[b]
}

// Partition cuts the peers in one off from the rest: their connections
// close, and nothing crosses until Heal.
func (s *memSwarm) Partition(one []peer.ID) {
	s.mu.Lock()
	s.side = map[peer.ID]bool{}
	for _, p := range one {
		s.side[p] = true
	}
	// Every peer across the cut is lost, connected or not: a node Keeps a
	// connection to every peer it hears of (a no-op here), so on a real
	// network each of them would disconnect.
	var lost [][2]*memNode
	for _, a := range s.nodes {
		for id, b := range s.nodes {
			if s.cut(a.Self(), id) {
				delete(a.conns, id)
				lost = append(lost, [2]*memNode{a, b})
			}
		}
	}
	s.mu.Unlock()
	for _, l := range lost {
		l[0].disconnected(l[1].Self())
	}
}

// Heal ends the partition; nodes redial on their own.
func (s *memSwarm) Heal() {
	s.mu.Lock()
	s.side = nil
	s.mu.Unlock()
}

// memNode is one node's Network on a memSwarm.
type memNode struct {
	sw *memSwarm
	*gossip.MemTransport
	// guarded by sw.mu
	conns  map[peer.ID]bool
	buses  []*memBus
	onDisc []func(peer.ID)
	closed bool
	// tamper, when set, rewrites what this node publishes: a hostile
	// member's lies (see hostile_test.go).
	tamper func(*gossip.Message)
	// reach is what AutoNAT would say of this node (a network.Reachability).
	reach atomic.Int32
}

func (n *memNode) Reachability() network.Reachability { return network.Reachability(n.reach.Load()) }
func (n *memNode) ObservedAddrs() []string            { return nil }
func (n *memNode) Conns() []PeerConn {
	n.sw.mu.Lock()
	defer n.sw.mu.Unlock()
	var out []PeerConn
	for p := range n.conns {
		out = append(out, PeerConn{Peer: p.String(), Addr: "mem/" + p.String()})
	}
	return out
}

var _ Network = (*memNode)(nil)

func (n *memNode) Open(ctx context.Context, p peer.ID, proto protocol.ID) (gossip.Stream, error) {
	if f := n.sw.beforeOpen.Load(); f != nil {
		(*f)(n.Self(), p, proto)
	}
	n.sw.mu.Lock()
	cut := n.sw.cut(n.Self(), p)
	n.sw.mu.Unlock()
	if cut {
		return nil, fmt.Errorf("memswarm: %s is across the partition", p)
	}
	return n.MemTransport.Open(ctx, p, proto)
}

func (n *memNode) Addr() string { return "mem/" + n.Self().String() }

func (n *memNode) Connect(ctx context.Context, addr string) (peer.ID, error) {
	id, err := peer.Decode(strings.TrimPrefix(addr, "mem/"))
	if err != nil {
		return "", fmt.Errorf("memswarm: bad address %q: %w", addr, err)
	}
	return id, n.Redial(ctx, id)
}

func (n *memNode) Redial(ctx context.Context, p peer.ID) error {
	s := n.sw
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.nodes[p]
	if o == nil || o.closed || n.closed || s.cut(n.Self(), p) {
		return fmt.Errorf("memswarm: %s unreachable", p)
	}
	n.conns[p], o.conns[n.Self()] = true, true
	return nil
}

func (n *memNode) Connected(p peer.ID) bool {
	n.sw.mu.Lock()
	defer n.sw.mu.Unlock()
	return n.conns[p]
}

func (n *memNode) ClosePeer(p peer.ID) {
	s := n.sw
	s.mu.Lock()
	o := s.nodes[p]
	had := n.conns[p]
	delete(n.conns, p)
	if o != nil {
		delete(o.conns, n.Self())
	}
	s.mu.Unlock()
	if had {
		n.disconnected(p)
		if o != nil {
			o.disconnected(n.Self())
		}
	}
}

func (n *memNode) disconnected(p peer.ID) {
	n.sw.mu.Lock()
	fs := slices.Clone(n.onDisc)
	n.sw.mu.Unlock()
	for _, f := range fs {
		f(p)
	}
}

func (n *memNode) OnDisconnect(f func(peer.ID)) {
	n.sw.mu.Lock()
	n.onDisc = append(n.onDisc, f)
	n.sw.mu.Unlock()
}

func (n *memNode) Keep(peer.ID, []string)  {}
func (n *memNode) Learn(peer.ID, []string) {}
func (n *memNode) JoinAddrs() []string     { return []string{n.Addr()} }
func (n *memNode) BytesIn() int64          { return 0 }
func (n *memNode) BytesOut() int64         { return 0 }

// Close takes the node off the network, as a process exit would: its
// streams break and its peers see it disconnect.
func (n *memNode) Close() error {
	s := n.sw
	s.mu.Lock()
	if n.closed {
		s.mu.Unlock()
		return nil
	}
	n.closed = true
	peers := make([]peer.ID, 0, len(n.conns))
	for p := range n.conns {
		peers = append(peers, p)
	}
	s.mu.Unlock()
	for _, p := range peers {
		n.ClosePeer(p)
	}
	s.streams.Isolate(n.Self())
	return nil
}

// Bus floods messages to every node in our connected component, each
// through the same decoding and validation a gossipsub validator does,
// and the receiver's gate.
func (n *memNode) Bus(ctx context.Context, run string, gate gossip.Gate, deliver func(peer.ID, gossip.Message)) (Publisher, error) {
	b := &memBus{node: n, run: run, gate: gate, in: make(chan busMsg, 1024)}
	ctx, b.cancel = context.WithCancel(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-b.in:
				// A cut also loses what was still in flight across it: a
				// heartbeat queued before the cut must not bring a peer
				// from the other side back into the view afterwards.
				n.sw.mu.Lock()
				cut := n.sw.cut(m.from, n.Self())
				n.sw.mu.Unlock()
				if !cut {
					deliver(m.from, m.msg)
				}
			}
		}
	}()
	n.sw.mu.Lock()
	n.buses = append(n.buses, b)
	n.sw.mu.Unlock()
	return b, nil
}

type busMsg struct {
	from peer.ID
	msg  gossip.Message
}

type memBus struct {
	node   *memNode
	run    string
	gate   gossip.Gate
	in     chan busMsg
	cancel context.CancelFunc
}

func (b *memBus) Publish(ctx context.Context, m gossip.Message) error {
	s := b.node.sw
	s.mu.Lock()
	tamper := b.node.tamper
	s.mu.Unlock()
	if tamper != nil {
		m = cloneMessage(m)
		tamper(&m)
	}
	data, err := gossip.Encode(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if b.node.closed {
		s.mu.Unlock()
		return errors.New("memswarm: closed")
	}
	// The connected component, breadth first.
	seen := map[peer.ID]bool{b.node.Self(): true}
	queue := []*memNode{b.node}
	var reach []*memBus
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for p := range cur.conns {
			if o := s.nodes[p]; o != nil && !seen[p] && !o.closed {
				seen[p] = true
				queue = append(queue, o)
				reach = append(reach, o.buses...)
			}
		}
	}
	s.mu.Unlock()
	for _, o := range reach {
		got, err := gossip.Decode(data)
		if err != nil || got.Kind != m.Kind || o.run != b.run || !o.gate.Pass(b.node.Self(), got) {
			continue
		}
		select {
		case o.in <- busMsg{b.node.Self(), got}:
		default: // a full queue drops, as gossipsub's does
		}
	}
	return nil
}

func (b *memBus) Close() { b.cancel() }

// cloneMessage copies m's heartbeat and progress, so a tamper function
// does not rewrite the publisher's own copy.
func cloneMessage(m gossip.Message) gossip.Message {
	if m.Heartbeat != nil {
		hb := *m.Heartbeat
		m.Heartbeat = &hb
	}
	if m.Progress != nil {
		p := *m.Progress
		m.Progress = &p
	}
	return m
}

// setTamper makes f rewrite everything this node publishes from now on.
func (n *memNode) setTamper(f func(*gossip.Message)) {
	n.sw.mu.Lock()
	n.tamper = f
	n.sw.mu.Unlock()
}

// tinyData writes a small synthetic MNIST-format CSV pair (4×4 images,
// ten classes, each lighting two pixels over noise) to a fresh
// directory: the in-process tests need a model that learns, not MNIST,
// whose loading takes seconds under the race detector.
func tinyData(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	for _, f := range []struct {
		name string
		rows int
	}{{"mnist_train.csv", 2000}, {"mnist_test.csv", 500}} {
		var b strings.Builder
		for range f.rows {
			c := rng.IntN(10)
			b.WriteString(strconv.Itoa(c))
			for i := range 16 {
				v := rng.IntN(60)
				if i == c || i == (c+6)%16 {
					v = 200
				}
				b.WriteString("," + strconv.Itoa(v))
			}
			b.WriteByte('\n')
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
