//go:build adversary

package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A node on a bare machine joins through a peer that serves MNIST's
// true manifest with every chunk corrupted (the adversary build's
// data=1) and through an honest one: the liar is detected at its first
// chunk and dropped, the honest peer serves the rest, and all three end
// on one hash.
//
//	go test -tags adversary -run TestCorruptDataPeerDropped -v ./cmd/swarmtrain/
func TestCorruptDataPeerDropped(t *testing.T) {
	dir := t.TempDir()
	liarCmd := func(exe string, a ...string) *exec.Cmd {
		return exec.Command("env", append([]string{"SWARMTRAIN_ADVERSARY=data=1", exe}, a...)...)
	}
	pair := startTrainingPair(t, dir, [2]func(string, ...string) *exec.Cmd{exec.Command, liarCmd}, [2][]string{})
	a, liar := pair[0], pair[1]
	liarInfo := liar.info()
	b := startNodeWith(t, filepath.Join(dir, "bare"), "/ip4/127.0.0.1/tcp/0", bare(t), append([]string{"--join", liarInfo.Addrs[0], "--join", a.info().Addrs[0]}, dataRun...)...)
	newcomerFinishes(t, b, pair)
	log := b.log()
	if !strings.Contains(log, "fetched data") {
		t.Fatalf("the bare node did not fetch its data:\n%s", log)
	}
	var dropped string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "data peer dropped") {
			dropped = l
		}
	}
	if !strings.Contains(dropped, liarInfo.Peer) || !strings.Contains(dropped, "does not match the manifest") {
		t.Fatalf("the corrupting peer was not dropped for a bad chunk (line %q):\n%s", dropped, log)
	}
}
