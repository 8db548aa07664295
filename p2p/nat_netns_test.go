//go:build netns

package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/internal/netlab"
)

// reachStatus is what a reachHost helper reports about itself and one peer.
type reachStatus struct {
	Reachability string
	Observed     []string
	PunchOK      int
	PunchFailed  int
	Conns        []string // remote addresses of the connections to the peer
	Relayed      bool
}

// natPSK is the lab swarm's key.
var natPSK = bytes.Repeat([]byte{0x5a}, SwarmKeySize)

func seedID(seed byte) (crypto.PrivKey, peer.ID) {
	key, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
	if err != nil {
		panic(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	return key, id
}

// reachHost is one host of TestNATTraversal: a keyed host on tcp/4001 with
// every reachability mechanism on (autorelay's timings shortened), which
// dials each bootstrap address until it connects, prints "joined", then
// answers commands on stdin, one line each:
//
//	connect ADDR   dials ADDR (relayed connections allowed): "ok" or "error: ..."
//	status PEER    a reachStatus as JSON
func reachHost(seed string, bootstrap []string) {
	cfg := DefaultConfig()
	cfg.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/4001"}
	cfg.PSK = natPSK
	cfg.Identity, _ = seedID(seed[0])
	cfg.RelayBootDelay = time.Second
	cfg.RelayInterval = 2 * time.Second
	cfg.RelayBackoff = 5 * time.Second
	h, err := New(cfg)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer h.Close()
	for _, a := range bootstrap {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := h.Connect(ctx, a)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Println("error:", err)
				return
			}
		}
	}
	fmt.Println("joined")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "connect":
			ctx, cancel := context.WithTimeout(network.WithAllowLimitedConn(context.Background(), "test"), 30*time.Second)
			_, err := h.Connect(ctx, arg)
			cancel()
			if err != nil {
				fmt.Println("error:", strings.ReplaceAll(err.Error(), "\n", " "))
			} else {
				fmt.Println("ok")
			}
		case "status":
			p, err := peer.Decode(arg)
			if err != nil {
				fmt.Println("{}")
				continue
			}
			st := reachStatus{Reachability: h.Reachability().String(), Relayed: h.Relayed(p)}
			st.PunchOK, st.PunchFailed = h.HolePunches()
			for _, a := range h.ObservedAddrs() {
				st.Observed = append(st.Observed, a.String())
			}
			for _, c := range h.Network().ConnsToPeer(p) {
				st.Conns = append(st.Conns, c.RemoteMultiaddr().String())
			}
			json.NewEncoder(os.Stdout).Encode(st)
		}
	}
}

// labHost drives one reachHost process.
type labHost struct {
	name string
	id   peer.ID
	in   io.WriteCloser
	out  *bufio.Reader
}

func (h *labHost) ask(t *testing.T, line string) string {
	t.Helper()
	if _, err := io.WriteString(h.in, line+"\n"); err != nil {
		t.Fatalf("%s: %v", h.name, err)
	}
	s, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %q: %v", h.name, line, err)
	}
	return strings.TrimSpace(s)
}

func (h *labHost) status(t *testing.T, p peer.ID) reachStatus {
	t.Helper()
	var st reachStatus
	if s := h.ask(t, "status "+p.String()); json.Unmarshal([]byte(s), &st) != nil {
		t.Fatalf("%s: status %q", h.name, s)
	}
	return st
}

// Two public hosts and one host in each of two homes behind NAT routers,
// all keyed hosts with DefaultConfig's reachability machinery. With
// ordinary (port-preserving) routers, the home hosts find themselves
// Private and the public ones Public with no flag; home A reaches home B
// through a relay on a public host, and hole punching leaves them a direct
// connection. With strict routers (random source ports, so the address a
// peer observes is useless to the punch) A and B stay connected through
// the relay.
//
//	sudo go test -tags netns -run TestNATTraversal -v -timeout 20m ./p2p/
func TestNATTraversal(t *testing.T) {
	if err := netlab.DelayAvailable(); err != nil {
		t.Skip(err)
	}
	for _, strict := range []bool{false, true} {
		name := "punch"
		if strict {
			name = "strict"
		}
		t.Run(name, func(t *testing.T) { natTraversal(t, strict) })
	}
}

func natTraversal(t *testing.T, strict bool) {
	n, err := netlab.NewNAT(2, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if strict {
		for k := range n.Routers {
			if err := n.Strict(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	nodes := []*netlab.Host{n.Hosts[0], n.Hosts[1], n.Homes[0][0], n.Homes[1][0]}
	names := []string{"public 0", "public 1", "home A", "home B"}
	seeds := "pqab"
	hosts := make([]*labHost, len(nodes))
	addr := func(i int) string {
		return fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", nodes[i].IP, hosts[i].id)
	}
	for i := range nodes {
		_, id := seedID(seeds[i])
		hosts[i] = &labHost{name: names[i], id: id}
	}
	for i, node := range nodes {
		var boot []string
		for j := range min(i, 2) { // everyone joins through the public hosts
			boot = append(boot, addr(j))
		}
		hp := startHelper(t, n.Lab, node, "reach", "joined", append([]string{seeds[i : i+1]}, boot...)...)
		defer hp.close()
		hosts[i].in, hosts[i].out = hp.in, hp.out
	}
	a, b := hosts[2], hosts[3]

	want := []string{"Public", "Public", "Private", "Private"}
	checkFor(t, 3*time.Minute, time.Second, func() error {
		for i, h := range hosts {
			if st := h.status(t, a.id); st.Reachability != want[i] {
				return fmt.Errorf("%s is %s (observed %v), want %s", h.name, st.Reachability, st.Observed, want[i])
			}
		}
		return nil
	})
	for k, h := range []*labHost{a, b} {
		obs := h.status(t, a.id).Observed
		t.Logf("%s observed at %v", h.name, obs)
		// A strict router shows each peer another port: no address gets
		// the two observers it needs.
		if want := "/ip4/" + n.Routers[k].IP + "/tcp/4001"; !strict && !slices.Contains(obs, want) {
			t.Errorf("%s observed at %v, want %s (its router's address, port kept)", h.name, obs, want)
		}
	}

	// A reaches B through a relay on public 0 once B holds a reservation
	// there (autorelay makes it once B is Private and public 0 serves).
	circuit := addr(0) + "/p2p-circuit/p2p/" + b.id.String()
	checkFor(t, 2*time.Minute, time.Second, func() error {
		if r := a.ask(t, "connect "+circuit); r != "ok" {
			return fmt.Errorf("home A via the relay: %s", r)
		}
		return nil
	})
	if !strict {
		checkFor(t, 2*time.Minute, 500*time.Millisecond, func() error {
			st := a.status(t, b.id)
			for _, c := range st.Conns {
				if !strings.Contains(c, "/p2p-circuit") {
					t.Logf("home A reaches home B directly at %s (punches ok %d, failed %d)", c, st.PunchOK, st.PunchFailed)
					return nil
				}
			}
			return fmt.Errorf("home A has only %v to home B (punches ok %d, failed %d)", st.Conns, st.PunchOK, st.PunchFailed)
		})
		return
	}
	// Strict routers: hole punching cannot work. Wait until it has tried
	// (DCUtR makes 3 attempts), then the relayed connection must remain.
	checkFor(t, time.Minute, 500*time.Millisecond, func() error {
		sa, sb := a.status(t, b.id), b.status(t, a.id)
		if sa.PunchOK+sb.PunchOK > 0 {
			return nil // the assertions below report it
		}
		if f := sa.PunchFailed + sb.PunchFailed; f < 3 {
			return fmt.Errorf("%d failed punches so far", f)
		}
		return nil
	})
	for _, pair := range [][2]*labHost{{a, b}, {b, a}} {
		st := pair[0].status(t, pair[1].id)
		if !st.Relayed {
			t.Errorf("%s to %s: connections %v, want relayed only", pair[0].name, pair[1].name, st.Conns)
		}
		t.Logf("%s: punches ok %d, failed %d; connections %v", pair[0].name, st.PunchOK, st.PunchFailed, st.Conns)
	}
}
