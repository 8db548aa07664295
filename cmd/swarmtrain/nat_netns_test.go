//go:build netns

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/netlab"
	"github.com/swarmtrain/swarmtrain/node"
)

var homeSteps = flag.Int("home.steps", 1000, "optimizer steps of the home-network runs")

// Two public nodes and one node in each of two homes behind NAT routers
// train MNIST together: the home nodes find themselves private with no
// flag (and run as clients), end with a direct connection to each other
// (a hole punch through both routers), and killing a public node mid-run
// does not stop training. All four (three after the kill) end on one
// hash at >= 97%.
//
//	sudo go test -tags netns -run TestHomeNodes -v -timeout 30m ./cmd/swarmtrain/
func TestHomeNodesPunch(t *testing.T) { homeSwarm(t, false) }

// The same with routers that randomise source ports, so no hole punch can
// work: the home nodes still contribute every round as clients, through
// the connections they dial to the public nodes, and the run ends on one
// hash.
func TestHomeNodesNoPunch(t *testing.T) { homeSwarm(t, true) }

func homeSwarm(t *testing.T, strict bool) {
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
	lab, err := netlab.NewNAT(2, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	if strict {
		for k := range lab.Homes {
			if err := lab.Strict(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	hosts := []*netlab.Host{lab.Hosts[0], lab.Hosts[1], lab.Homes[0][0], lab.Homes[1][0]}
	names := []string{"public 0", "public 1", "home A", "home B"}
	const n = 4
	steps := *homeSteps
	dir := t.TempDir()
	run := []string{"--batch", "64", "--target-batch", "256", "--steps", strconv.Itoa(steps),
		"--linger", "10s", "--min-peers", strconv.Itoa(n)}
	nodes := make([]*labNode, n)
	var join string
	for i, h := range hosts {
		ln := &labNode{host: h, http: h.IP + ":8080"}
		args := append([]string{"--http", ln.http, "--shard", fmt.Sprintf("%d/%d", i, n)}, run...)
		if join != "" {
			args = append(args, "--join", join)
		}
		inNS := func(name string, args ...string) *exec.Cmd { return lab.Command(h, name, args...) }
		ln.proc = startNodeWith(t, filepath.Join(dir, fmt.Sprintf("n%d", i)), "/ip4/0.0.0.0/tcp/4001", inNS, args...)
		if join == "" {
			join = ln.info().Addrs[0]
			t.Logf("joining through %s", join)
		}
		nodes[i] = ln
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, ln := range nodes {
				if ln != nil {
					t.Logf("%s log, last lines:\n%s", names[i], tail(ln.log(), 60))
				}
			}
		}
	})
	status := func(i int) node.Status {
		st, err := nodes[i].status(lab.Lab)
		if err != nil {
			t.Logf("%s: status: %v", names[i], err)
		}
		return st
	}
	// Reachability, with no flag: public nodes public, home nodes private
	// and therefore clients.
	checkFor(t, 3*time.Minute, time.Second, func() error {
		for i := range nodes {
			st := status(i)
			want, mode := "public", "owner"
			if i >= 2 {
				want, mode = "private", "client"
			}
			if st.Reachability != want || st.Mode != mode {
				return fmt.Errorf("%s: reachability %q mode %q (observed %v), want %s and %s", names[i], st.Reachability, st.Mode, st.ObservedAddrs, want, mode)
			}
		}
		return nil
	})
	t.Logf("public nodes found public and home nodes private (clients), no flags; home A observed at %v", status(2).ObservedAddrs)

	homeB := status(3).Peer

	// doctor, run where a volunteer would run it: at home it says private
	// and, joining the other home node through its relayed address, how
	// the hole punch went; on a public machine it says public.
	var circuit string
	checkFor(t, time.Minute, time.Second, func() error {
		for _, a := range status(3).Addrs {
			if strings.Contains(a, "/p2p-circuit/") {
				circuit = a
				return nil
			}
		}
		return fmt.Errorf("home B advertises no relayed address: %v", status(3).Addrs)
	})
	type doctorRun struct {
		rep doctorReport
		err error
	}
	doctor := func(h *netlab.Host, join string) <-chan doctorRun {
		out := make(chan doctorRun, 1)
		go func() {
			exe, _ := os.Executable()
			cmd := lab.Command(h, exe, "doctor", "--json", "--wait", "60s", "--probe-mib", "1", "--join", join, "--key", testSwarmKey)
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			var r doctorRun
			b, err := cmd.Output()
			if r.err = err; err == nil {
				r.err = json.Unmarshal(b, &r.rep)
			}
			out <- r
		}()
		return out
	}
	atHome, onPublic := doctor(hosts[2], circuit), doctor(hosts[1], join)
	home, pub := <-atHome, <-onPublic
	if home.err != nil || pub.err != nil {
		t.Fatalf("doctor at home: %v; on a public machine: %v", home.err, pub.err)
	}
	t.Logf("doctor at home: %s, %s; join %+v", home.rep.Reachability, home.rep.Mode, *home.rep.Join)
	t.Logf("doctor on a public machine: %s, %s; join %+v", pub.rep.Reachability, pub.rep.Mode, *pub.rep.Join)
	if home.rep.Reachability != "private" || home.rep.Mode != "client" || !home.rep.Join.Connected {
		t.Errorf("doctor at home reports %+v", home.rep)
	}
	if wantHow := "hole punch"; strict {
		if home.rep.Join.How != "relay" {
			t.Errorf("doctor behind a port-randomising router connected by %q, want relay", home.rep.Join.How)
		}
	} else if home.rep.Join.How != wantHow || home.rep.Join.HolePunch != "succeeded" {
		t.Errorf("doctor at home joined the other home by %q (punch %s), want %s", home.rep.Join.How, home.rep.Join.HolePunch, wantHow)
	}
	if pub.rep.Reachability != "public" || pub.rep.Mode != "owner" || pub.rep.Join.How != "direct dial" {
		t.Errorf("doctor on a public machine reports %+v", pub.rep)
	}
	if !strict {
		// The home nodes dial each other (through a relay first), and the
		// hole punch leaves them a direct connection.
		checkFor(t, 3*time.Minute, time.Second, func() error {
			for _, c := range status(2).Conns {
				if c.Peer == homeB && !c.Relayed {
					return nil
				}
			}
			return fmt.Errorf("home A's connections: %+v; want a direct one to home B", status(2).Conns)
		})
		for _, c := range status(2).Conns {
			if c.Peer == homeB {
				t.Logf("home A - home B: direct, over %s", c.Addr)
			}
		}
	}

	// Kill public node 1 a third of the way in; the other three go on.
	checkFor(t, 10*time.Minute, time.Second, func() error {
		if s := status(0).Step; s < uint64(steps/3) {
			return fmt.Errorf("step %d of %d", s, steps)
		}
		return nil
	})
	before := status(0).Step
	// From here on the home nodes are in the swarm: count the rounds they
	// average in against the steps still to go.
	mid := map[int]node.Status{2: status(2), 3: status(3)}
	nodes[1].cmd.Process.Signal(syscall.SIGKILL)
	<-nodes[1].done
	t.Logf("SIGKILL of public 1 at step %d", before)

	var hash string
	for i, ln := range nodes {
		if i == 1 {
			continue
		}
		if err := ln.wait(20 * time.Minute); err != nil {
			t.Fatalf("%s: %v\n%s\nlog tail:\n%s", names[i], err, ln.stderr, tail(ln.log(), 40))
		}
		r := ln.result()
		t.Logf("%s: step %d, %d rounds, %d state syncs, accuracy %.2f%%, hash %s", names[i], r.Step, r.Rounds, r.Syncs, 100*r.Accuracy, r.Hash)
		if r.Step != uint64(steps) {
			t.Errorf("%s finished at step %d of %d", names[i], r.Step, steps)
		}
		if hash == "" {
			hash = r.Hash
		} else if r.Hash != hash {
			t.Errorf("%s ended on state %s, public 0 on %s", names[i], r.Hash, hash)
		}
		if r.Accuracy < 0.97 {
			t.Errorf("%s: accuracy %.2f%%, want >= 97%%", names[i], 100*r.Accuracy)
		}
		if m, ok := mid[i]; ok {
			// Every step after the kill (one retried round included) is
			// a round the client averaged in.
			togo, did := steps-int(m.Step), r.Rounds-m.Rounds
			if m.Step == 0 || did < togo*98/100 {
				t.Errorf("%s averaged in %d of the %d rounds after step %d; a client should contribute to every round", names[i], did, togo, m.Step)
			}
		}
	}
	for i := range nodes {
		t.Logf("%s (%s):\n%s", names[i], hosts[i].IP, story(nodes[i].log()))
	}
	for _, i := range []int{2, 3} {
		if !slices.ContainsFunc(strings.Split(nodes[i].log(), "\n"), func(l string) bool {
			return strings.Contains(l, "mode changed") && strings.Contains(l, "mode=client")
		}) {
			t.Errorf("%s never logged turning client", names[i])
		}
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
