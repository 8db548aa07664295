package p2p

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// founds records what a host's discovery reported.
type founds struct {
	mu    sync.Mutex
	peers map[peer.ID]peer.AddrInfo
}

func (f *founds) add(ai peer.AddrInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers[ai.ID] = ai
}

func (f *founds) has(p peer.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.peers[p]; !ok {
		return fmt.Errorf("%s not found yet (found %d)", p, len(f.peers))
	}
	return nil
}

// startTestDiscovery runs the DHT part of discovery (no mDNS: tests stay
// off the machine's networks) with fast lookups.
func startTestDiscovery(t *testing.T, h *Host, run string) *founds {
	t.Helper()
	f := &founds{peers: map[peer.ID]peer.AddrInfo{}}
	cfg := DefaultDiscoveryConfig(run)
	cfg.MDNS = false
	cfg.FindMin, cfg.FindMax, cfg.AdvertiseEvery = 100*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	cfg.Found = f.add
	d, err := StartDiscovery(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return f
}

func connect(t *testing.T, from, to *Host) {
	t.Helper()
	if _, err := from.Connect(testCtx(t, 10*time.Second), to.JoinAddrs()[0]); err != nil {
		t.Fatal(err)
	}
}

// TestDHTFindsTheRunsPeers: peers that each know only one bootstrap peer
// find each other through the run's rendezvous, and keep finding new
// ones through each other after the bootstrap peer is gone; a peer of
// another run is not reported.
func TestDHTFindsTheRunsPeers(t *testing.T) {
	boot := newTestHost(t, "")
	b, c := newTestHost(t, ""), newTestHost(t, "")
	other := newTestHost(t, "")
	startTestDiscovery(t, boot, "run1")
	fb, fc := startTestDiscovery(t, b, "run1"), startTestDiscovery(t, c, "run1")
	startTestDiscovery(t, other, "run2")
	connect(t, b, boot)
	connect(t, c, boot)
	connect(t, other, boot)
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		return errors.Join(fb.has(c.ID()), fc.has(b.ID()))
	})
	if fb.has(other.ID()) == nil || fc.has(other.ID()) == nil {
		t.Fatal("a peer of another run was reported")
	}

	// The bootstrap peer leaves; a newcomer that knows only b finds c.
	boot.Close()
	d := newTestHost(t, "")
	fd := startTestDiscovery(t, d, "run1")
	connect(t, d, b)
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error { return fd.has(c.ID()) })
}

// TestRendezvousHidesTheRun: the DHT key does not spell the run ID out,
// and differs per run.
func TestRendezvousHidesTheRun(t *testing.T) {
	a, b := Rendezvous("0123456789abcdef"), Rendezvous("0123456789abcdee")
	if a == b || len(a) != len("swarmtrain/")+32 {
		t.Fatalf("rendezvous %q, %q", a, b)
	}
}

func TestStartDiscoveryValidates(t *testing.T) {
	h := newTestHost(t, "")
	if _, err := StartDiscovery(h, DiscoveryConfig{Namespace: "x"}); err == nil {
		t.Fatal("a config without Found was accepted")
	}
}
