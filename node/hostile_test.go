package node

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gossip"
	"github.com/swarmtrain/swarmtrain/gossip/statesync"
	"github.com/swarmtrain/swarmtrain/internal/testutil"
)

// syncBuf is a node's log, read by the test while the node writes it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// liar is what a hostile member claims: a step, and a zeroed state there
// whose hash it gossips and whose manifest and chunks it serves, all
// consistent, so only the swarm policy stands between it and a takeover.
type liar struct {
	mu          sync.Mutex
	nParams     int
	nOpt        int
	step        uint64
	hash        string
	zero        statesync.Snapshot
	claimedOnce bool
}

func (l *liar) claim(step uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.zero = statesync.Snapshot{Step: step, Params: make([]float32, l.nParams), Opt: make([]float32, l.nOpt)}
	l.step, l.hash, l.claimedOnce = step, statesync.HashState(step, l.zero.Params, l.zero.Opt, nil), true
}

func (l *liar) current() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.step, nil
}

func (l *liar) snapshot() (statesync.Snapshot, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.zero, nil
}

func (l *liar) claimed() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.step, l.hash
}

// tamper rewrites a heartbeat or progress message into the claim.
func (l *liar) tamper(m *gossip.Message) {
	step, hash := l.claimed()
	switch {
	case m.Heartbeat != nil:
		m.Heartbeat.Step, m.Heartbeat.Hash, m.Heartbeat.Syncing, m.Heartbeat.SyncTo = step, hash, false, 0
	case m.Progress != nil:
		m.Progress.Step, m.Progress.Hash = step, hash
	}
}

// serve answers state requests from the liar's zeroed state on t.
func (l *liar) serve(t gossip.Transport, run string) {
	statesync.NewServer(t, run, l.current, l.snapshot, nil)
}

// sybil is a fresh identity on sw that never trains: it gossips the
// liar's claim through peer `via` and serves its zeroed state.
func sybil(t *testing.T, sw *memSwarm, run string, via peer.ID, l *liar) {
	nd := sw.add()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := nd.Redial(ctx, via); err != nil {
		t.Fatal(err)
	}
	// Sybils hold the key and the run: they say hello and are admitted,
	// so only the quorum stands between their claim and the honest nodes.
	adm := &gossip.Admission{Run: run}
	adm.Serve(nd)
	if err := adm.Greet(ctx, nd, via); err != nil {
		t.Fatal(err)
	}
	bus, err := nd.Bus(ctx, run, gossip.Gate{}, func(peer.ID, gossip.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	l.serve(nd, run)
	go func() {
		var seq uint64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			step, hash := l.claimed()
			seq++
			hb := gossip.Heartbeat{Peer: nd.Self(), Run: run, Seq: seq, Step: step, Hash: hash, Addrs: nd.JoinAddrs()}
			bus.Publish(ctx, gossip.Message{Kind: gossip.KindHeartbeat, Heartbeat: &hb})
			seq++
			p := gossip.Progress{Peer: nd.Self(), Run: run, Seq: seq, Step: step, Hash: hash, Samples: 1 << 20}
			bus.Publish(ctx, gossip.Message{Kind: gossip.KindProgress, Progress: &p})
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
}

// An admitted member that has averaged with the swarm, and then four
// fresh identities, each gossip a far-ahead step (within --steps, then
// beyond it) with the hash of a zeroed state they serve. No honest node
// replaces its state: none downloads anything, none takes the claimed
// hash, they keep training together, and each logs the claim as ignored,
// once per peer.
func TestInProcessHostileClaimsIgnored(t *testing.T) {
	const steps = 1_000_000 // never reached: the test stops the nodes
	for _, tc := range []struct {
		name   string
		sybils int // 0: the hostile peer is a member that trained with the swarm
	}{
		{"a member that averaged with us", 0},
		{"four sybil identities", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sw, data := newMemSwarm(), tinyData(t)
			k := 3
			if tc.sybils == 0 {
				k = 4 // the last one turns hostile
			}
			logs := make([]*syncBuf, k)
			i := 0
			nodes := swarmOf(t, sw, data, k, steps, func(c *Config) {
				logs[i] = &syncBuf{}
				c.Log = logs[i]
				i++
			})
			honest, honestLogs := nodes[:3], logs[:3]
			testutil.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
				for _, r := range honest {
					if err := atLeast(r.n, 5); err != nil {
						return err
					}
				}
				return nil
			})
			n0 := honest[0].n
			l := &liar{nParams: len(n0.rep.params), nOpt: len(n0.rep.optState)}
			l.claim(500_000)
			var liars []peer.ID
			if tc.sybils == 0 {
				h := nodes[3]
				h.n.mu.Lock()
				weight := n0.part.Weights()[h.n.ID()]
				h.n.mu.Unlock()
				if weight == 0 {
					t.Fatal("the hostile member never averaged with node 0: the test checks nothing")
				}
				mn := h.n.net.(gatedNetwork).Network.(*memNode)
				l.serve(h.n.net, h.n.run)
				mn.setTamper(l.tamper)
				liars = append(liars, h.n.ID())
			} else {
				for range tc.sybils {
					sybil(t, sw, n0.run, n0.ID(), l)
				}
				sw.mu.Lock()
				for id, nd := range sw.nodes {
					if len(nd.buses) > 0 && !isNode(id, nodes) {
						liars = append(liars, id)
					}
				}
				sw.mu.Unlock()
			}
			// Each phase: the honest nodes train on (20 more steps each),
			// never at the liar's hash, and log its claim with the reason.
			var claimed []string // the liar's hashes
			for _, phase := range []struct {
				claim  uint64
				reason string
			}{{500_000, "ahead of what the swarm's rounds show"}, {5_000_000, "beyond the run's last step"}} {
				l.claim(phase.claim)
				_, h := l.claimed()
				claimed = append(claimed, h)
				var from []uint64
				for _, r := range honest {
					from = append(from, r.n.currentStep())
				}
				testutil.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
					_, zero := l.claimed()
					for j, r := range honest {
						st := r.n.Status()
						if st.Hash == zero || st.Step >= 500_000 {
							t.Fatalf("node %d took the claim: step %d hash %s", j, st.Step, st.Hash)
						}
						if st.Step < from[j]+20 {
							return fmt.Errorf("node %d at step %d, want %d: it stopped training", j, st.Step, from[j]+20)
						}
						for _, p := range liars {
							if !logged(honestLogs[j].String(), p, phase.reason) {
								return fmt.Errorf("node %d has not logged %s's claim of step %d as %q", j, p.ShortString(), phase.claim, phase.reason)
							}
						}
					}
					return nil
				})
			}
			// A node that falls behind its honest peers (a loaded machine
			// under -race) may still download their state; never the liar's.
			for j := range honest {
				for _, line := range strings.Split(honestLogs[j].String(), "\n") {
					if !strings.Contains(line, "replacing local state") && !strings.Contains(line, "state synced") {
						continue
					}
					for _, h := range claimed {
						if strings.Contains(line, h) || strings.Contains(line, " step=500000 ") || strings.Contains(line, " step=5000000 ") {
							t.Errorf("node %d adopted the claim: %s", j, line)
						}
					}
				}
				for _, p := range liars {
					if c := strings.Count(honestLogs[j].String(), "ignoring a peer's claimed step\" peer="+p.String()); c != 2 {
						t.Errorf("node %d logged %s's claims %d times, want once per reason", j, p.ShortString(), c)
					}
				}
			}
			// The honest nodes are one swarm still: their rounds had all
			// three of them, so they hold one state at one step whenever
			// they stand still. Stop them and compare.
			var res []*Result
			for _, r := range honest {
				r.cancel()
				res = append(res, r.wait(t, 10*time.Second))
			}
			for j, r := range res {
				if r.Rounds < 20 {
					t.Errorf("node %d averaged only %d rounds", j, r.Rounds)
				}
			}
		})
	}
}

func isNode(id peer.ID, nodes []*running) bool {
	for _, r := range nodes {
		if r.n.ID() == id {
			return true
		}
	}
	return false
}

// logged reports whether log has the line that ignores p's claim for reason.
func logged(log string, p peer.ID, reason string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "ignoring a peer's claimed step\" peer="+p.String()) && strings.Contains(line, reason) {
			return true
		}
	}
	return false
}
