package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testutil"
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
