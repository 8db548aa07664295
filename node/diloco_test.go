package node

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
)

// newPhaseNode is a node of an overlapped DiLoCo run, not started, with a
// phase over its initial state.
func newPhaseNode(t *testing.T, sw *memSwarm, data string) (*Node, *phase) {
	t.Helper()
	cfg := memConfig(t, sw, data, 10)
	cfg.Run.Averaging.Mode, cfg.Run.Averaging.InnerSteps = ModeDiLoCoOverlap, 4
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.net.Close() })
	np := n.local.model.NumParams()
	return n, &phase{local: slices.Clone(n.rep.params), delta: make([]float32, np)}
}

// A phase ends once the swarm has taken a phase's samples for each peer
// of our last round and us, since the phase began, or once a partner is
// past our step (with overlap, the fastest peer collects its round and
// moves on the moment its phase ends); a peer outside our last round, or
// one syncing, counts for nothing.
func TestDiLoCoPhaseOver(t *testing.T) {
	sw, data := newMemSwarm(), tinyData(t)
	n, _ := newPhaseNode(t, sw, data)
	partner, stranger := peer.ID("partner"), peer.ID("stranger")
	n.mu.Lock()
	n.rep.lastMembers = []peer.ID{n.ID(), partner}
	n.mu.Unlock()
	now := time.Now()
	var seq uint64
	report := func(p peer.ID, step uint64, samples int) {
		seq++
		n.view.ObserveHeartbeat(gossip.Heartbeat{Peer: p, Seq: seq, Step: step}, now)
		n.view.ObserveProgress(gossip.Progress{Peer: p, Seq: seq, Step: step, Samples: samples}, now)
	}
	const phase = 20 * 16
	for _, tc := range []struct {
		what          string
		who           peer.ID
		step          uint64
		samples, base int
		own           int
		want          bool
	}{
		{"both halfway", partner, 5, phase / 2, 0, phase / 2, false},
		{"both done", partner, 5, phase, 0, phase, true},
		{"the partner done, we not", partner, 5, phase, 0, phase / 2, false},
		{"the partner fast enough for both", partner, 5, phase + phase/2, 0, phase / 2, true},
		{"the partner's samples of a phase that failed to average left out", partner, 5, phase + phase/2, phase, phase / 2, false},
		{"the partner past our step", partner, 6, 16, 0, 0, true},
		{"a stranger fast enough for both", stranger, 5, 2 * phase, 0, 0, false},
		{"a stranger past our step", stranger, 6, 16, 0, 0, false},
		{"the partner gone, we done", stranger, 5, 0, 0, phase, true},
	} {
		t.Run(tc.what, func(t *testing.T) {
			n.view.Remove(partner)
			n.view.Remove(stranger)
			report(tc.who, tc.step, tc.samples)
			if got := n.phaseOver(5, map[peer.ID]int{tc.who: tc.base}, tc.own, phase); got != tc.want {
				t.Errorf("phaseOver = %v, want %v", got, tc.want)
			}
		})
	}
}
