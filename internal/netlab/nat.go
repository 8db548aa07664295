package netlab

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
)

// NAT is a lab shaped like the internet seen from home: a public segment
// (Lab.Hosts, on the hub's bridge) and home networks, each behind its own
// router namespace that masquerades (source NAT) its hosts' traffic onto the
// router's one public address, as a home router does.
//
// The public segment uses 11.213.0.0/24, a public range: libp2p ignores
// private addresses for AutoNAT and hole punching, so a lab on 10.x could
// not test them. The addresses exist only inside the lab's namespaces.
// Public hosts are 11.213.0.1 …; home k's router is 11.213.0.(201+k) on
// the public side and 192.168.(k+1).1 at home; its hosts are
// 192.168.(k+1).2 … with the router as default route.
//
// The routers behave like Linux (and most home routers) by default: the
// mapping keeps the inside source port when it is free and is the same
// whatever the destination (conntrack's MASQUERADE), and new connections
// from outside are dropped, so only replies (and a peer's SYN that meets
// our own outgoing SYN, which is what a TCP hole punch is) get in. Strict
// makes a router pick a random source port for every connection, so the
// address a peer observes is useless to anyone else and hole punching
// cannot work.
type NAT struct {
	*Lab
	Homes   [][]*Host // Homes[k] are the hosts of home k
	Routers []*Host   // Routers[k].IP is home k's public address
}

// Public-segment and home addressing; see NAT.
const (
	publicFormat = "11.213.0.%d"
	routerBase   = 201
)

// NewNAT builds public hosts on the public segment and one home network
// per entry of homes, with that many hosts behind its router. At most 50
// homes of at most 250 hosts.
func NewNAT(public int, homes ...int) (*NAT, error) {
	if public < 0 || public > 200 {
		return nil, fmt.Errorf("netlab: %d public hosts; want 0 to 200", public)
	}
	if len(homes) > 50 {
		return nil, fmt.Errorf("netlab: %d homes; want at most 50", len(homes))
	}
	for k, n := range homes {
		if n < 1 || n > 250 {
			return nil, fmt.Errorf("netlab: home %d has %d hosts; want 1 to 250", k, n)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, errors.New("netlab: iptables not found (install iptables); NAT routers need it")
	}
	l, err := newLab(public, publicFormat)
	if err != nil {
		return nil, err
	}
	n := &NAT{Lab: l}
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	for k, size := range homes {
		if err := n.addHome(k, size); err != nil {
			return nil, err
		}
	}
	ok = true
	return n, nil
}

// addHome builds router k and its home network of size hosts.
func (n *NAT) addHome(k, size int) error {
	l := n.Lab
	r := &Host{Index: k, NS: l.prefix + "r" + strconv.Itoa(k), IP: fmt.Sprintf(publicFormat, routerBase+k), port: "r" + strconv.Itoa(k)}
	l.extra = append(l.extra, r.NS)
	n.Routers = append(n.Routers, r)
	gw := fmt.Sprintf("192.168.%d.1", k+1)
	steps := [][]string{
		{"netns", "add", r.NS},
		{"-n", l.hub, "link", "add", r.port, "type", "veth", "peer", "name", "wan", "netns", r.NS},
		{"-n", l.hub, "link", "set", r.port, "master", "br0"},
		{"-n", l.hub, "link", "set", r.port, "up"},
		{"-n", r.NS, "link", "set", "lo", "up"},
		{"-n", r.NS, "addr", "add", r.IP + "/24", "dev", "wan"},
		{"-n", r.NS, "link", "set", "wan", "up"},
		{"-n", r.NS, "link", "add", "lan", "type", "bridge"},
		{"-n", r.NS, "addr", "add", gw + "/24", "dev", "lan"},
		{"-n", r.NS, "link", "set", "lan", "up"},
	}
	var home []*Host
	for j := range size {
		h := &Host{Index: j, NS: fmt.Sprintf("%sh%d-%d", l.prefix, k, j), IP: fmt.Sprintf("192.168.%d.%d", k+1, j+2), port: "h" + strconv.Itoa(j)}
		l.extra = append(l.extra, h.NS)
		home = append(home, h)
		steps = append(steps,
			[]string{"netns", "add", h.NS},
			[]string{"-n", r.NS, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			[]string{"-n", r.NS, "link", "set", h.port, "master", "lan"},
			[]string{"-n", r.NS, "link", "set", h.port, "up"},
			[]string{"-n", h.NS, "link", "set", "lo", "up"},
			[]string{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
			[]string{"-n", h.NS, "link", "set", "eth0", "up"},
			[]string{"-n", h.NS, "route", "add", "default", "via", gw},
		)
	}
	n.Homes = append(n.Homes, home)
	for _, s := range steps {
		if err := l.ip(s...); err != nil {
			return err
		}
	}
	ipt := func(rule ...string) error {
		return l.ip(append([]string{"netns", "exec", r.NS, "iptables", "-w"}, rule...)...)
	}
	rules := [][]string{
		{"-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"},
		// Unsolicited inbound is dropped (not refused): a punch that
		// arrives before our own SYN left is retried by TCP, not reset.
		{"-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"},
		{"-A", "FORWARD", "-i", "wan", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"},
	}
	for _, rule := range rules {
		if err := ipt(rule...); err != nil {
			return err
		}
	}
	return l.ip("netns", "exec", r.NS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
}

// Strict makes home k's router map every new connection to a random
// source port (MASQUERADE --random-fully), like a symmetric NAT: the
// public address a peer observes for one connection is not the one the
// next connection leaves from, so hole punching cannot work. Call it before
// the home's hosts open connections; existing mappings keep their ports.
func (n *NAT) Strict(k int) error {
	if k < 0 || k >= len(n.Routers) {
		return fmt.Errorf("netlab: no home %d", k)
	}
	ns := n.Routers[k].NS
	return n.ip("netns", "exec", ns, "iptables", "-w", "-t", "nat", "-R", "POSTROUTING", "1", "-o", "wan", "-j", "MASQUERADE", "--random-fully")
}
