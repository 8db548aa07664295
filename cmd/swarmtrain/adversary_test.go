//go:build adversary

package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The process-level security test (docs/SECURITY.md): six nodes train
// MNIST; one of them, built with the adversary hooks (node/adversary.go)
// and switched on by its environment, sends gradients scaled by -50 from
// step 100, and from step 250 gossips a step 200 ahead with a made-up
// hash and serves an all-zero state. The honest five must end on one
// hash, at the final step, within one point of the accuracy of the same
// run with six honest nodes.
//
//	go test -tags adversary -run TestMaliciousNode -v -timeout 30m ./cmd/swarmtrain/
func TestMaliciousNode(t *testing.T) {
	aggregate := "clip"
	if a := os.Getenv("SWARMTRAIN_TEST_AGGREGATE"); a != "" {
		aggregate = a // to see the test fail without a robust rule
	}
	const nodes, steps = 6, 600
	run := []string{"--hidden", "128", "--batch", "32", "--target-batch", strconv.Itoa(32 * nodes),
		"--steps", strconv.Itoa(steps), "--linger", "10s", "--aggregate", aggregate}
	honest := sixNodes(t, filepath.Join(t.TempDir(), "honest"), nodes, run, "")
	bad := sixNodes(t, filepath.Join(t.TempDir(), "attacked"), nodes, run, "from=100,scale=-50,claim=250,ahead=200")
	t.Logf("six honest: %.2f%%; five honest and one malicious: %.2f%%", 100*honest, 100*bad)
	if math.Abs(bad-honest) > 0.01 {
		t.Errorf("accuracy %.2f%% with a malicious node vs %.2f%% without: more than 1 point apart", 100*bad, 100*honest)
	}
}

// sixNodes runs a swarm whose last node is malicious when spec is set,
// and returns the honest nodes' accuracy after checking they agree.
func sixNodes(t *testing.T, dir string, nodes int, run []string, spec string) float64 {
	t.Helper()
	var procs []*proc
	for i := range nodes {
		args := append([]string{"--min-peers", strconv.Itoa(nodes), "--http", "127.0.0.1:0"}, run...)
		if i > 0 {
			args = append(args, "--join", procs[0].info().Addrs[0])
		}
		command := exec.Command
		if spec != "" && i == nodes-1 {
			command = func(exe string, a ...string) *exec.Cmd {
				return exec.Command("env", append([]string{"SWARMTRAIN_ADVERSARY=" + spec, exe}, a...)...)
			}
		}
		procs = append(procs, startNodeWith(t, filepath.Join(dir, fmt.Sprintf("n%d", i)), "/ip4/127.0.0.1/tcp/0", command, args...))
	}
	honest := procs
	if spec != "" {
		honest = procs[:nodes-1]
	}
	for _, p := range procs {
		if err := p.wait(10 * time.Minute); err != nil && !(spec != "" && p == procs[nodes-1]) {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, p.log())
		}
	}
	first := honest[0].result()
	for _, p := range honest {
		r := p.result()
		if r.Step != first.Step || r.Hash != first.Hash {
			t.Errorf("%s ended at step %d hash %s; %s at step %d hash %s", r.Peer, r.Step, r.Hash, first.Peer, first.Step, first.Hash)
		}
		if strings.Contains(p.log(), "replacing local state") {
			t.Errorf("%s replaced its state:\n%s", r.Peer, p.log())
		}
		if spec != "" && !strings.Contains(p.log(), "ignoring a peer's claimed step") {
			t.Errorf("%s never saw the false claim: the test checks nothing", r.Peer)
		}
	}
	return first.Accuracy
}
