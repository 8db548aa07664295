package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/atomicfile"
)

// PeersFile is where a node keeps the peers of its run it has seen, in
// its directory, so that a restart finds the swarm without --join.
const PeersFile = "peers.json"

const (
	// maxSavedPeers caps the peers kept, the most recently heard first:
	// enough that one of them is still up after churn, few enough that a
	// restart dials them all at once.
	maxSavedPeers = 32
	// maxSavedAddrs caps the addresses kept per peer: its best few join
	// addresses (the heartbeat lists them best first).
	maxSavedAddrs = 4
	// maxPeersFileBytes bounds what is read: a full file is under 16 KiB.
	maxPeersFileBytes = 64 << 10
	// savePeersEvery paces writes of the file while peers come and go.
	savePeersEvery = 10 * time.Second
)

// savedPeer is a peer as the file keeps it.
type savedPeer struct {
	ID    peer.ID   `json:"id"`
	Addrs []string  `json:"addrs"` // each ends in /p2p/<id>
	Seen  time.Time `json:"seen"`  // last heard of
}

// peersFile is the file's layout. Run is the run the peers trained on:
// a directory reused for another run ignores them.
type peersFile struct {
	Run   string      `json:"run"`
	Peers []savedPeer `json:"peers"`
}

// peerBook remembers the run's peers as heard of, bounded, for the peers
// file. No I/O, no clock reads (callers pass now); safe for concurrent use.
type peerBook struct {
	mu    sync.Mutex
	run   string
	self  peer.ID
	peers map[peer.ID]savedPeer
	dirty bool
}

func newPeerBook(run string, self peer.ID) *peerBook {
	return &peerBook{run: run, self: self, peers: map[peer.ID]savedPeer{}}
}

// seen records that p, at addrs (its join addresses), is alive on our
// run. Addresses that are not p's are dropped; a peer with none is not
// kept (nobody could dial it from the file).
func (b *peerBook) seen(p peer.ID, addrs []string, now time.Time) {
	if p == b.self {
		return
	}
	addrs = ownAddrs(p, addrs)
	if len(addrs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old, known := b.peers[p]
	if known && slices.Equal(old.Addrs, addrs) && now.Sub(old.Seen) < savePeersEvery {
		return // nothing worth a write
	}
	b.peers[p] = savedPeer{ID: p, Addrs: addrs, Seen: now}
	b.dirty = true
	if len(b.peers) > 2*maxSavedPeers {
		b.trimLocked(maxSavedPeers)
	}
}

// add puts peers read from the file in the book, so a rewrite keeps them
// until fresher ones push them out.
func (b *peerBook) add(ps []savedPeer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range ps {
		if _, known := b.peers[p.ID]; !known && p.ID != b.self {
			b.peers[p.ID] = p
		}
	}
	b.trimLocked(maxSavedPeers)
}

// trimLocked keeps the keep most recently heard peers.
func (b *peerBook) trimLocked(keep int) {
	for _, p := range b.sortedLocked()[min(keep, len(b.peers)):] {
		delete(b.peers, p.ID)
	}
}

func (b *peerBook) sortedLocked() []savedPeer {
	out := make([]savedPeer, 0, len(b.peers))
	for _, p := range b.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y savedPeer) int {
		if c := y.Seen.Compare(x.Seen); c != 0 {
			return c
		}
		return bytes.Compare([]byte(x.ID), []byte(y.ID))
	})
	return out
}

// encode returns the file's bytes when something changed since the last
// call (nil otherwise).
func (b *peerBook) encode() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.dirty {
		return nil
	}
	b.dirty = false
	ps := b.sortedLocked()
	ps = ps[:min(len(ps), maxSavedPeers)]
	out, _ := json.MarshalIndent(peersFile{Run: b.run, Peers: ps}, "", "  ")
	return append(out, '\n')
}

// ownAddrs returns at most maxSavedAddrs of addrs that are well-formed
// multiaddrs ending in /p2p/<p>, without duplicates.
func ownAddrs(p peer.ID, addrs []string) []string {
	var out []string
	for _, s := range addrs {
		if len(out) == maxSavedAddrs {
			break
		}
		ai, err := peer.AddrInfoFromString(s)
		if err != nil || ai.ID != p || len(ai.Addrs) == 0 || slices.Contains(out, s) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// decodePeers reads a peers file of run. The file is ours, but it sits on
// disk and may be stale, edited or damaged: whatever is wrong with an
// entry drops that entry (counted in skipped), and a file of another run
// or that is not a peers file yields no peers and an error saying why.
func decodePeers(b []byte, run string, self peer.ID) (ps []savedPeer, skipped int, err error) {
	if len(b) > maxPeersFileBytes {
		return nil, 0, fmt.Errorf("%d bytes, more than the %d a peers file holds", len(b), maxPeersFileBytes)
	}
	var f struct {
		Run   string            `json:"run"`
		Peers []json.RawMessage `json:"peers"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, 0, fmt.Errorf("not a peers file: %w", err)
	}
	if f.Run != run {
		return nil, 0, fmt.Errorf("peers of run %q, not ours (%s)", f.Run, run)
	}
	seen := map[peer.ID]bool{}
	for _, raw := range f.Peers {
		if len(ps) == maxSavedPeers {
			skipped += 1
			continue
		}
		var sp struct {
			ID    string    `json:"id"`
			Addrs []string  `json:"addrs"`
			Seen  time.Time `json:"seen"`
		}
		if json.Unmarshal(raw, &sp) != nil {
			skipped++
			continue
		}
		id, err := peer.Decode(sp.ID)
		if err != nil || id == self || seen[id] {
			skipped++
			continue
		}
		addrs := ownAddrs(id, sp.Addrs)
		if len(addrs) == 0 {
			skipped++
			continue
		}
		seen[id] = true
		ps = append(ps, savedPeer{ID: id, Addrs: addrs, Seen: sp.Seen})
	}
	return ps, skipped, nil
}

// loadPeers reads Dir/peers.json: the peers of our run seen before a
// restart. A missing file is no peers; anything wrong with it is logged
// and ignored (never fatal: the node can still start or be pointed at
// the swarm with --join).
func (n *Node) loadPeers() []savedPeer {
	path := filepath.Join(n.cfg.Dir, PeersFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var b []byte
	if err == nil {
		b, err = io.ReadAll(io.LimitReader(f, maxPeersFileBytes+1))
		f.Close()
	}
	if err != nil {
		n.log.Warn("ignoring saved peers", "file", path, "err", err)
		return nil
	}
	ps, skipped, err := decodePeers(b, n.run, n.ID())
	if err != nil {
		n.log.Warn("ignoring saved peers", "file", path, "err", err)
		return nil
	}
	if skipped > 0 {
		n.log.Warn("ignoring bad entries of the saved peers", "file", path, "skipped", skipped, "kept", len(ps))
	}
	return ps
}

// savePeers writes the peers file if the book changed since the last
// write, and says whether it wrote; failures are logged (the file only
// helps a restart).
func (n *Node) savePeers() bool {
	b := n.peers.encode()
	if b == nil {
		return false
	}
	if err := atomicfile.Write(filepath.Join(n.cfg.Dir, PeersFile), b); err != nil {
		n.log.Warn("saving peers", "err", err)
	}
	return true
}

// learnSaved gives the network every saved address of the saved peers
// (a dial of one of them tries them all) and returns one address per
// peer, for the join plan.
func (n *Node) learnSaved(ps []savedPeer) []string {
	var out []string
	for _, p := range ps {
		n.net.Learn(p.ID, p.Addrs)
		out = append(out, p.Addrs[0])
	}
	return out
}

// finder is a network that can look for the run's peers by itself: on
// the local network (mDNS) and through the peers it is connected to (a
// DHT). found is called for each peer it finds; Close stops it.
type finder interface {
	Discover(run string, mdns bool, found func(peer.ID, []string)) (io.Closer, error)
}

// startDiscovery starts the network's discovery, if it has one. mDNS
// runs only on nodes of a real swarm (a key, or --open): a node without
// either is a test's or a sweep trial's, whose neighbours on the machine
// are other tests' swarms.
func (n *Node) startDiscovery() (io.Closer, error) {
	if n.finder == nil {
		return nil, nil
	}
	mdns := !n.cfg.NoMDNS && (len(n.cfg.SwarmKey) > 0 || n.cfg.Open)
	return n.finder.Discover(n.run, mdns, n.found)
}

// found dials and greets a discovered peer. Anyone on the local network
// can answer mDNS, and a DHT record can be stale: the greeter paces the
// hellos, the address book bounds what is learnt, and a peer that is
// not on our run (or not reachable) is dropped quietly.
func (n *Node) found(p peer.ID, addrs []string) {
	if p == n.ID() || n.admitted.has(p) || !n.greets.start(p, n.clock.Now()) {
		return
	}
	go func() {
		n.net.Learn(p, addrs)
		ctx, cancel := n.clock.WithTimeout(context.Background(), n.cfg.FrameTimeout)
		err := n.net.Redial(ctx, p)
		cancel()
		if err != nil {
			n.greets.done(p, false, n.clock.Now())
			n.log.Debug("discovered peer not reachable", "peer", p, "err", err)
			return
		}
		n.log.Info("discovered peer", "peer", p)
		if n.greet(p) {
			n.followDiscovered(p)
		}
	}()
}

// maxBootstrap caps the peers a node follows before it has averaged:
// the --join addresses, the saved peers and the first peers discovery
// found.
const maxBootstrap = 8

// followDiscovered makes p, found by discovery and admitted, a peer this
// node follows until it has averaged, like a --join peer: a node that
// found its swarm by mDNS or the DHT then downloads the swarm's state
// instead of training alone on its own. Only in a swarm with a key,
// where whoever connects holds it; in an open swarm anyone on the local
// network could answer, so only --join and saved peers are followed.
func (n *Node) followDiscovered(p peer.ID) {
	if len(n.cfg.SwarmKey) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.bootstrap) < maxBootstrap && !slices.Contains(n.bootstrap, p) {
		n.bootstrap = append(n.bootstrap, p)
	}
}
