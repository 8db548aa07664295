//go:build netns

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/netlab"
)

// Nodes on one local network, each in its own namespace on the lab's
// bridge, with the same --key-file and no --join, find each other by
// mDNS and train together (multicast needs a real link: loopback alone
// may not carry it). Two start together; a third, started once they are
// training, finds them the same way, downloads the state and ends on
// their hash.
//
//	sudo go test -tags netns -run TestMDNSFindsLocalPeers -v ./cmd/swarmtrain/
func TestMDNSFindsLocalPeers(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
	lab, err := netlab.New(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "swarm.key")
	if err := os.WriteFile(keyFile, []byte(testSwarmKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := []string{"--hidden", "32", "--batch", "32", "--target-batch", "96", "--steps", "300", "--warmup", "5", "--lr", "0.003", "--linger", "5s"}
	var nodes []*labNode
	start := func(i int, extra ...string) {
		h := lab.Hosts[i]
		ln := &labNode{host: h, http: h.IP + ":8080"}
		inNS := func(name string, args ...string) *exec.Cmd { return lab.Command(h, name, args...) }
		args := append([]string{"--key-file", keyFile, "--no-mdns=false", "--http", ln.http}, append(extra, run...)...)
		ln.proc = startNodeWith(t, filepath.Join(dir, fmt.Sprintf("n%d", i)), "/ip4/"+h.IP+"/tcp/4001", inNS, args...)
		nodes = append(nodes, ln)
	}
	start(0, "--min-peers", "2")
	start(1, "--min-peers", "2")
	checkFor(t, 2*time.Minute, 100*time.Millisecond, func() error {
		st, err := nodes[0].status(lab)
		if err == nil && st.Step < 30 {
			err = fmt.Errorf("n0 at step %d", st.Step)
		}
		return err
	})
	start(2)
	var procs []*proc
	for _, n := range nodes {
		procs = append(procs, n.proc)
	}
	for _, p := range procs {
		if err := p.wait(3 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, logs(procs...))
		}
	}
	r0 := procs[0].result()
	for i, p := range procs {
		r := p.result()
		// The late node may join as the run ends: it must hold the
		// swarm's state, not have averaged.
		if r.Hash != r0.Hash || r.Step != r0.Step || (i < 2 && r.Partners < 1) {
			t.Fatalf("n%d: step %d hash %s, %d partners; n0: step %d hash %s: they did not train together\n%s", i, r.Step, r.Hash, r.Partners, r0.Step, r0.Hash, logs(procs...))
		}
	}
	if r2 := procs[2].result(); r2.Syncs < 1 {
		t.Fatalf("the late node never downloaded the state\n%s", procs[2].log())
	}
}
