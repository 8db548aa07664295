//go:build netns

package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/netlab"
	"github.com/swarmtrain/swarmtrain/node"
)

// The network harness: real node processes, each in its own network
// namespace, on a bridge the test builds, with rate limits, partitions
// and heals. It needs root:
//
//	sudo go test -tags netns -run TestPartition -v -timeout 30m ./cmd/swarmtrain/

var (
	partitionFor   = flag.Duration("partition.for", 30*time.Second, "how long the swarm stays cut in two")
	partitionSteps = flag.Int("partition.steps", 3000, "optimizer steps of the run")
	partitionRate  = flag.String("partition.rate", "200mbit", "tc rate limit on every host's link (empty: none)")
)

// statusEnv makes the test binary print one node's /status from inside a
// namespace: the test itself runs outside every namespace and cannot
// reach the nodes' addresses.
const statusEnv = "SWARMTRAIN_TEST_STATUS"

func init() {
	if addr := os.Getenv(statusEnv); addr != "" {
		st, err := fetchStatus(addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(st)
		os.Exit(0)
	}
}

type labNode struct {
	*proc
	host *netlab.Host
	http string
}

func (n *labNode) status(lab *netlab.Lab) (node.Status, error) {
	var st node.Status
	exe, err := os.Executable()
	if err != nil {
		return st, err
	}
	cmd := lab.Command(n.host, exe)
	cmd.Env = append(os.Environ(), statusEnv+"="+n.http)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return st, fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(out, &st)
}

// TestPartitionHeals is the partition acceptance test: six nodes train
// MNIST, the network splits 3|3 for 30 s, then heals. Both halves must go
// on training while cut, and afterwards all six must converge on one
// state: every finishing replica holds the same hash at the final step.
// Then one node is killed with SIGKILL and restarted with its identity;
// it must rejoin. The test prints what each side did, from the nodes'
// own logs.
func TestPartitionHeals(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
	const n = 6
	lab, err := netlab.New(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	if *partitionRate != "" {
		for _, h := range lab.Hosts {
			if err := lab.Limit(h, *partitionRate); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	run := []string{"--hidden", "128", "--batch", "32", "--target-batch", strconv.Itoa(32 * n),
		"--steps", strconv.Itoa(*partitionSteps), "--linger", "10s", "--min-peers", strconv.Itoa(n)}
	nodes := make([]*labNode, n)
	var join string
	// start runs node i in its namespace; a restart reuses its directory
	// (so its identity) and logs to another file.
	start := func(i int, extra ...string) {
		h := lab.Hosts[i]
		ln := &labNode{host: h, http: h.IP + ":8080"}
		args := append([]string{"--http", ln.http, "--shard", fmt.Sprintf("%d/%d", i, n)}, run...)
		if join != "" {
			args = append(args, "--join", join)
		}
		inNS := func(name string, args ...string) *exec.Cmd { return lab.Command(h, name, args...) }
		ln.proc = startNodeWith(t, filepath.Join(dir, fmt.Sprintf("n%d", i)), "/ip4/"+h.IP+"/tcp/4001", inNS, append(args, extra...)...)
		if join == "" {
			join = ln.info().Addrs[0]
		}
		nodes[i] = ln
	}
	for i := range lab.Hosts {
		start(i)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, ln := range nodes {
				t.Logf("node %d (%s):\n%s", i, lab.Hosts[i].IP, tail(ln.log(), 40))
			}
		}
	})
	statuses := func() []node.Status {
		out := make([]node.Status, n)
		for i, ln := range nodes {
			out[i], _ = ln.status(lab)
		}
		return out
	}
	steps := func() []uint64 {
		out := make([]uint64, n)
		for i, st := range statuses() {
			out[i] = st.Step
		}
		return out
	}
	minOf := func(xs []uint64) uint64 {
		m := xs[0]
		for _, x := range xs {
			m = min(m, x)
		}
		return m
	}
	checkFor(t, 3*time.Minute, 500*time.Millisecond, func() error {
		if s := steps(); minOf(s) < 100 {
			return fmt.Errorf("steps %v: not all nodes training yet", s)
		}
		return nil
	})

	sideA, sideB := []int{0, 1, 2}, []int{3, 4, 5}
	before := steps()
	t.Logf("cutting the swarm %v | %v at steps %v", sideA, sideB, before)
	if err := lab.Partition(sideA, sideB); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	time.Sleep(*partitionFor)
	during := steps()
	if err := lab.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	t.Logf("healed after %v at steps %v", healed.Sub(cut).Round(time.Second), during)
	// One swarm again: every node's last round had all six members.
	checkFor(t, 2*time.Minute, 250*time.Millisecond, func() error {
		for i, st := range statuses() {
			if st.GroupSize != n && st.Step < uint64(*partitionSteps) {
				return fmt.Errorf("node %d averaged last with %d peers", i, st.GroupSize)
			}
		}
		return nil
	})
	t.Logf("all six averaging together again %v after the heal", time.Since(healed).Round(100*time.Millisecond))

	// Kill one node outright, then restart it with its identity: the five
	// go on, and the restarted node catches up and rejoins.
	const victim = 5
	firstLife := nodes[victim]
	firstLife.cmd.Process.Kill()
	<-firstLife.done
	killed := time.Now()
	checkFor(t, time.Minute, 250*time.Millisecond, func() error {
		for i, st := range statuses()[:victim] {
			if st.GroupSize != n-1 && st.Step < uint64(*partitionSteps) {
				return fmt.Errorf("node %d averaged last with %d peers", i, st.GroupSize)
			}
		}
		return nil
	})
	t.Logf("SIGKILL of node %d: the other five averaging without it after %v", victim, time.Since(killed).Round(100*time.Millisecond))
	start(victim, "--log-file", filepath.Join(dir, fmt.Sprintf("n%d", victim), "restart.log"))
	restarted := time.Now()
	checkFor(t, 2*time.Minute, 250*time.Millisecond, func() error {
		for i, st := range statuses() {
			if st.GroupSize != n && st.Step < uint64(*partitionSteps) {
				return fmt.Errorf("node %d averaged last with %d peers", i, st.GroupSize)
			}
		}
		return nil
	})
	t.Logf("node %d restarted: all six averaging together again %v later", victim, time.Since(restarted).Round(100*time.Millisecond))
	for _, side := range [][]int{sideA, sideB} {
		moved := false
		for _, i := range side {
			moved = moved || during[i] > before[i]+10
		}
		if !moved {
			t.Errorf("side %v did not train while cut off: steps %v → %v", side, before, during)
		}
	}
	if minOf(during) >= uint64(*partitionSteps) {
		t.Fatalf("the run ended during the partition; raise -partition.steps")
	}

	var hash string
	for i, ln := range nodes {
		if err := ln.wait(15 * time.Minute); err != nil {
			t.Fatalf("node %d: %v\n%s", i, err, ln.stderr)
		}
		r := ln.result()
		if r.Step != uint64(*partitionSteps) {
			t.Errorf("node %d finished at step %d", i, r.Step)
		}
		if hash == "" {
			hash = r.Hash
			t.Logf("final accuracy %.2f%%", 100*r.Accuracy)
		} else if r.Hash != hash {
			t.Errorf("node %d ended with state %s, node 0 with %s", i, r.Hash, hash)
		}
	}
	for _, side := range []struct {
		name  string
		nodes []int
	}{{"A", sideA}, {"B", sideB}} {
		for _, i := range side.nodes {
			t.Logf("side %s, node %d (%s):\n%s", side.name, i, lab.Hosts[i].IP, story(nodes[i].log()))
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d", victim), "restart.log")); err == nil {
		t.Logf("node %d after its restart:\n%s", victim, story(string(b)))
	}
}

// story keeps the log lines that tell what a node did about the fault:
// group changes, failed rounds, reconnects and state replacements.
func story(log string) string {
	var keep []string
	for _, line := range strings.Split(log, "\n") {
		for _, k := range []string{"group changed", "failed; retrying", "averaging recovered", "reconnected", "replacing local state", "state synced", "consensus", "syncing", "mode changed"} {
			if strings.Contains(line, k) {
				keep = append(keep, "  "+line)
				break
			}
		}
	}
	if len(keep) > 40 {
		keep = append(keep[:20], append([]string{fmt.Sprintf("  … %d more lines …", len(keep)-40)}, keep[len(keep)-20:]...)...)
	}
	return strings.Join(keep, "\n")
}
