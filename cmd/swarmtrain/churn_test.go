package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/node"
)

var (
	churn       = flag.Bool("churn", false, "run the churn acceptance test (about 12 minutes)")
	churnNodes  = flag.Int("churn.nodes", 6, "swarm size")
	churnSteps  = flag.Int("churn.steps", 2400, "optimizer steps of the run")
	churnEvery  = flag.Duration("churn.every", 20*time.Second, "kill one node with SIGKILL and start a fresh one this often")
	churnLength = flag.Duration("churn.for", 5*time.Minute, "how long to keep churning")
	churnGroup  = flag.Int("churn.max-group", 0, "the run's --max-group (0: one exact group; below the swarm size: Moshpit groups)")
	churnMode   = flag.String("churn.mode", "sync", "the run's --mode: sync, diloco or diloco-overlap (then -churn.steps counts outer steps)")
	churnInner  = flag.Int("churn.inner-steps", 20, "the run's --inner-steps in a DiLoCo mode")
)

// TestChurn is the acceptance test for churn-proof averaging: a swarm
// trains MNIST while every 20 s one node is killed with SIGKILL and a
// fresh node (new identity) joins, for 5 minutes. It checks: no stall of
// the swarm's step longer than 30 s, all finishing replicas identical, and
// final accuracy within 0.5 points of the same run without churn.
//
//	go test -run TestChurn -v -timeout 40m ./cmd/swarmtrain/ -args -churn
func TestChurn(t *testing.T) {
	if !*churn {
		t.Skip("pass -args -churn to run (about 12 minutes)")
	}
	run := []string{"--hidden", "256", "--batch", "64", "--target-batch", strconv.Itoa(64 * *churnNodes),
		"--steps", strconv.Itoa(*churnSteps), "--linger", "10s", "--max-group", strconv.Itoa(*churnGroup), "--mode", *churnMode}
	if *churnMode != "sync" {
		run = append(run, "--inner-steps", strconv.Itoa(*churnInner))
	}
	base := runSwarm(t, filepath.Join(t.TempDir(), "baseline"), run, false)
	t.Logf("baseline: accuracy %.2f%% in %v, max stall %v", 100*base.acc, base.took, base.maxStall)
	ch := runSwarm(t, filepath.Join(t.TempDir(), "churn"), run, true)
	t.Logf("churn: accuracy %.2f%% in %v, max stall %v, %d kills, %d finishers", 100*ch.acc, ch.took, ch.maxStall, ch.kills, ch.finishers)
	if ch.maxStall > 30*time.Second {
		t.Errorf("the swarm stalled for %v", ch.maxStall)
	}
	if math.Abs(ch.acc-base.acc) > 0.005 {
		t.Errorf("accuracy %.2f%% under churn vs %.2f%% without: more than 0.5 points apart", 100*ch.acc, 100*base.acc)
	}
}

type swarmOutcome struct {
	acc       float64
	took      time.Duration
	maxStall  time.Duration
	kills     int
	finishers int
}

func runSwarm(t *testing.T, dir string, run []string, churning bool) swarmOutcome {
	rng := rand.New(rand.NewPCG(42, 42))
	var procs []*proc
	next := 0
	killed := map[*proc]bool{}
	start := func(join string, minPeers int) *proc {
		args := []string{"--http", "127.0.0.1:0", "--min-peers", strconv.Itoa(minPeers)}
		if join != "" {
			args = append(args, "--join", join)
		}
		p := startNode(t, filepath.Join(dir, fmt.Sprintf("n%02d", next)), append(args, run...)...)
		next++
		procs = append(procs, p)
		return p
	}
	first := start("", *churnNodes)
	join := first.info().Addrs[0]
	for i := 1; i < *churnNodes; i++ {
		start(join, *churnNodes)
	}
	alive := func() []*proc {
		var out []*proc
		for _, p := range procs {
			select {
			case <-p.done:
			default:
				out = append(out, p)
			}
		}
		return out
	}
	began := time.Now()
	var out swarmOutcome
	lastStep, lastChange := uint64(0), time.Now()
	nextKill := time.Now().Add(*churnEvery)
	for len(alive()) > 0 {
		time.Sleep(100 * time.Millisecond)
		var top uint64
		for _, p := range alive() {
			if b, err := os.ReadFile(filepath.Join(p.dir, "node.json")); err == nil {
				var info node.Info
				if json.Unmarshal(b, &info) == nil && info.HTTP != "" {
					if st, err := fetchStatus(info.HTTP); err == nil && st.Phase != "waiting for peers" {
						top = max(top, st.Step)
					}
				}
			}
		}
		if top > lastStep {
			lastStep, lastChange = top, time.Now()
		} else if lastStep > 0 && lastStep < uint64(*churnSteps) {
			out.maxStall = max(out.maxStall, time.Since(lastChange))
		}
		if churning && time.Since(began) < *churnLength && time.Now().After(nextKill) && lastStep > 0 && lastStep+min(50, uint64(*churnSteps)/20) < uint64(*churnSteps) {
			nextKill = time.Now().Add(*churnEvery)
			live := alive()
			victim := live[rng.IntN(len(live))]
			killed[victim] = true
			victim.cmd.Process.Kill()
			<-victim.done
			out.kills++
			live = alive()
			if len(live) == 0 {
				t.Fatal("no node left to join")
			}
			start(live[0].info().Addrs[0], 1)
		}
	}
	out.took = time.Since(began)
	var hash string
	for _, p := range procs {
		if killed[p] {
			continue
		}
		if p.err != nil {
			t.Errorf("%s crashed: %v\n%s", p.dir, p.err, p.stderr)
			continue
		}
		r := p.result()
		if r.Step != uint64(*churnSteps) {
			t.Errorf("%s finished at step %d", r.Peer, r.Step)
		}
		if hash == "" {
			hash = r.Hash
			out.acc = r.Accuracy
		} else if r.Hash != hash {
			t.Errorf("replicas differ at the end: %s vs %s", r.Hash, hash)
		}
		out.finishers++
	}
	if out.finishers == 0 {
		t.Fatal("no node finished the run")
	}
	return out
}
