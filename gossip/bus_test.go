package gossip

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// busPeer is a loopback libp2p host with a bus whose gate admits the
// peers in admit, recording what it delivers and whom it found a stranger.
type busPeer struct {
	h   host.Host
	bus *Bus

	mu        sync.Mutex
	admit     map[peer.ID]bool
	got       map[peer.ID]int // deliveries by author
	strangers map[peer.ID]int
}

func newBusPeer(t *testing.T, run string) *busPeer {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	b := &busPeer{h: h, admit: map[peer.ID]bool{}, got: map[peer.ID]int{}, strangers: map[peer.ID]int{}}
	gate := Gate{
		Admitted: func(p peer.ID) bool { b.mu.Lock(); defer b.mu.Unlock(); return b.admit[p] },
		Stranger: func(p peer.ID, _ Message) { b.mu.Lock(); b.strangers[p]++; b.mu.Unlock() },
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if b.bus, err = NewBus(ctx, h, run, gate, func(from peer.ID, m Message) {
		b.mu.Lock()
		b.got[m.Heartbeat.Peer]++
		b.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.bus.Close)
	return b
}

func (b *busPeer) counts(p peer.ID) (got, stranger int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got[p], b.strangers[p]
}

// Gossip is delivered only from authors the gate admits: a connected
// peer that was never admitted publishes in vain (and is reported as a
// stranger, so the node can greet it), while an admitted one is heard.
// A node's own messages pass its gate whatever it says.
func TestBusDeliversOnlyAdmittedAuthors(t *testing.T) {
	const run = "0abc"
	a, b, c := newBusPeer(t, run), newBusPeer(t, run), newBusPeer(t, run)
	a.admit[b.h.ID()] = true // c: connected, never admitted
	b.admit[a.h.ID()] = true
	for _, p := range []*busPeer{b, c} {
		if err := a.h.Connect(context.Background(), peer.AddrInfo{ID: p.h.ID(), Addrs: p.h.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	var seq uint64
	publish := func(p *busPeer) {
		seq++
		hb := Heartbeat{Peer: p.h.ID(), Run: run, Seq: seq}
		if err := p.bus.Publish(context.Background(), Message{Kind: KindHeartbeat, Heartbeat: &hb}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		publish(a)
		publish(b)
		publish(c)
		gotB, _ := a.counts(b.h.ID())
		_, strangerC := a.counts(c.h.ID())
		gotA, _ := b.counts(a.h.ID())
		if gotB == 0 || strangerC == 0 || gotA == 0 {
			return fmt.Errorf("a got %d from b and saw c as a stranger %d times; b got %d from a", gotB, strangerC, gotA)
		}
		return nil
	})
	if got, _ := a.counts(c.h.ID()); got != 0 {
		t.Errorf("a delivered %d messages of c, which it never admitted", got)
	}
}
