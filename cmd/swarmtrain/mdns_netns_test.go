//go:build netns

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/netlab"
)

// Two nodes on one local network, each in its own namespace on the
// lab's bridge, with the same --key-file and no --join, find each other
// by mDNS and train together (multicast needs a real link: loopback
// alone may not carry it).
//
//	sudo go test -tags netns -run TestMDNSFindsLocalPeers -v ./cmd/swarmtrain/
func TestMDNSFindsLocalPeers(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
	lab, err := netlab.New(2)
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
	var procs []*proc
	for i, h := range lab.Hosts {
		inNS := func(name string, args ...string) *exec.Cmd { return lab.Command(h, name, args...) }
		args := append([]string{"--key-file", keyFile, "--no-mdns=false", "--min-peers", "2", "--linger", "3s"}, smallRun...)
		procs = append(procs, startNodeWith(t, filepath.Join(dir, "n"+string(rune('0'+i))), "/ip4/"+h.IP+"/tcp/4001", inNS, args...))
	}
	for _, p := range procs {
		if err := p.wait(3 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, logs(procs...))
		}
	}
	r0, r1 := procs[0].result(), procs[1].result()
	if r0.Hash != r1.Hash || r0.Partners < 1 || r1.Partners < 1 {
		t.Fatalf("n0 %s (%d partners), n1 %s (%d partners): they did not train together", r0.Hash, r0.Partners, r1.Hash, r1.Partners)
	}
}
