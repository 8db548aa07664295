package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
	"github.com/swarmtrain/swarmtrain/node"
)

// deadAddr is a join address nobody answers: a closed loopback port.
func deadAddr() string {
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/9/p2p/%s", testutil.PeerID(7))
}

// A node given a dead --join address and a live one joins through the
// live one and trains with it.
func TestJoinThroughAnyLiveAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	a := startNode(t, filepath.Join(dir, "a"), append([]string{"--min-peers", "2", "--linger", "2s"}, smallRun...)...)
	b := startNode(t, filepath.Join(dir, "b"), append([]string{"--min-peers", "2", "--linger", "2s", "--join", deadAddr(), "--join", a.info().Addrs[0]}, smallRun...)...)
	for _, p := range []*proc{a, b} {
		if err := p.wait(2 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, p.log())
		}
	}
	if ra, rb := a.result(), b.result(); ra.Hash != rb.Hash || rb.Partners < 1 {
		t.Fatalf("a %s, b %s with %d partners: b did not train with a", ra.Hash, rb.Hash, rb.Partners)
	}
}

// A node whose only --join address is dead retries it until
// --join-timeout, logging each try, then exits naming the address and
// the error (it used to exit after the first refused dial).
func TestJoinDeadAddressTimesOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	start := time.Now()
	p := startNode(t, filepath.Join(t.TempDir(), "n"), append([]string{"--join", deadAddr(), "--join-timeout", "4s"}, smallRun...)...)
	err := p.wait(time.Minute)
	took := time.Since(start)
	if err == nil {
		t.Fatal("a node with only a dead --join address exited 0")
	}
	msg := p.stderr.String()
	if !strings.Contains(msg, deadAddr()) || !strings.Contains(msg, "connection refused") || !strings.Contains(msg, "--join-timeout 4s") {
		t.Fatalf("exit message should name the address, its error and the timeout:\n%s", msg)
	}
	if took < 4*time.Second {
		t.Fatalf("gave up after %v, before --join-timeout 4s", took)
	}
	if n := strings.Count(p.log(), "will retry"); n < 2 {
		t.Fatalf("logged %d retries in 4 s, want at least 2 (1 s, 2 s):\n%s", n, p.log())
	}
}

// A node restarted on its --dir, after the node it joined through has
// left, rejoins the swarm without --join: through the peers it saved.
func TestRestartRejoinsThroughSavedPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	run := []string{"--hidden", "16", "--batch", "32", "--target-batch", "96", "--steps", "1500", "--linger", "15s"}
	a := startNode(t, filepath.Join(dir, "a"), append([]string{"--min-peers", "3"}, run...)...)
	join := []string{"--min-peers", "3", "--join", a.info().Addrs[0]}
	b := startNode(t, filepath.Join(dir, "b"), append([]string{"--http", "127.0.0.1:0"}, append(join, run...)...)...)
	c := startNode(t, filepath.Join(dir, "c"), append(join, run...)...)
	bInfo := b.info()
	checkFor(t, time.Minute, 50*time.Millisecond, func() error {
		saved, err := os.ReadFile(filepath.Join(c.dir, node.PeersFile))
		if err != nil || !strings.Contains(string(saved), bInfo.Peer) {
			return fmt.Errorf("c has not saved b yet: %v %s", err, saved)
		}
		return nil
	})
	checkFor(t, 2*time.Minute, 50*time.Millisecond, stepAtLeast(bInfo.HTTP, 20))
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c.wait(10 * time.Second)
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := a.wait(30 * time.Second); err != nil {
		t.Fatalf("a did not leave cleanly: %v\n%s", err, a.stderr)
	}
	st, _ := fetchStatus(bInfo.HTTP)
	checkFor(t, time.Minute, 50*time.Millisecond, stepAtLeast(bInfo.HTTP, st.Step+10))

	c2 := startNode(t, filepath.Join(dir, "c"), run...) // no --join
	for _, p := range []*proc{b, c2} {
		if err := p.wait(4 * time.Minute); err != nil {
			t.Fatalf("%v\n%s\n%s", err, p.stderr, p.log())
		}
	}
	rb, rc := b.result(), c2.result()
	if rc.Hash != rb.Hash || rc.Step != rb.Step || rc.Syncs < 1 {
		t.Fatalf("restarted c: step %d hash %s after %d syncs; b: step %d hash %s\n%s", rc.Step, rc.Hash, rc.Syncs, rb.Step, rb.Hash, logs(b, c2))
	}
	if l := c2.log(); !strings.Contains(l, "msg=joined peer="+bInfo.Peer) {
		t.Fatalf("restarted c did not join through b:\n%s", l)
	}
}
