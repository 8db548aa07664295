// Package netlab builds a small network for fault tests out of Linux
// network namespaces: N hosts, each in its own namespace with one veth
// link to a hub namespace that holds the bridges. Everything lives in
// namespaces the lab created (nothing is added to the caller's own
// network), addresses are private to the lab, and Close removes it all.
//
// Faults it can cause: rate limits on a host's link (tc tbf), partitions
// (hosts moved onto separate bridges, so packets between groups are
// silently dropped, as on a real cut) and healing them. This kernel has no
// netem, so the lab adds no delay; simulate latency in-process.
//
// It needs root and iproute2 (ip, tc).
package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Host is one machine of the lab.
type Host struct {
	Index int
	NS    string // network namespace name
	IP    string // its address on the lab network
	port  string // its link's name in the hub namespace
}

// Lab is a network of hosts. Create it with New; Close tears it down.
type Lab struct {
	prefix string
	hub    string
	Hosts  []*Host
	groups int // bridges in use by the current partition
}

const namePrefix = "swarmtrain-lab-"

// Available reports why a lab cannot be built here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (install iproute2)", tool)
		}
	}
	return nil
}

// New builds a lab of n hosts (at most 250) on one bridge, with addresses
// 10.213.0.1 … 10.213.0.n. Labs of processes that no longer exist are
// removed first, so a crashed test run leaves nothing behind for long.
func New(n int) (*Lab, error) {
	if n < 1 || n > 250 {
		return nil, fmt.Errorf("netlab: %d hosts; want 1 to 250", n)
	}
	if err := Available(); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	removeStale()
	l := &Lab{prefix: namePrefix + strconv.Itoa(os.Getpid()) + "-"}
	l.hub = l.prefix + "hub"
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	if err := l.ip("netns", "add", l.hub); err != nil {
		return nil, err
	}
	if err := l.ipIn(l.hub, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	if err := l.bridge(0); err != nil {
		return nil, err
	}
	for i := range n {
		h := &Host{Index: i, NS: l.prefix + strconv.Itoa(i), IP: fmt.Sprintf("10.213.0.%d", i+1), port: "p" + strconv.Itoa(i)}
		l.Hosts = append(l.Hosts, h)
		// The veth pair is created inside the hub namespace and one end is
		// moved straight into the host's: it never exists in ours.
		steps := [][]string{
			{"netns", "add", h.NS},
			{"-n", l.hub, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			{"-n", l.hub, "link", "set", h.port, "master", "br0"},
			{"-n", l.hub, "link", "set", h.port, "up"},
			{"-n", h.NS, "link", "set", "lo", "up"},
			{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
		}
		for _, s := range steps {
			if err := l.ip(s...); err != nil {
				return nil, err
			}
		}
	}
	ok = true
	return l, nil
}

// bridge creates bridge brK in the hub if it does not exist yet.
func (l *Lab) bridge(k int) error {
	name := "br" + strconv.Itoa(k)
	if l.ipIn(l.hub, "link", "show", name) == nil {
		return nil
	}
	if err := l.ipIn(l.hub, "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	return l.ipIn(l.hub, "link", "set", name, "up")
}

// Command runs name with args inside h's namespace.
func (l *Lab) Command(h *Host, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Limit caps what h sends to rate (tc syntax, e.g. "20mbit") with a token
// bucket; an empty rate removes the cap.
func (l *Lab) Limit(h *Host, rate string) error {
	if rate == "" {
		return run("tc", "-n", h.NS, "qdisc", "del", "dev", "eth0", "root")
	}
	return run("tc", "-n", h.NS, "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "64kb", "latency", "200ms")
}

// Partition splits the hosts into groups that cannot reach each other;
// hosts named in no group stay with group 0. Packets between groups are
// dropped without any error, like a cut cable: peers notice only by
// silence.
func (l *Lab) Partition(groups ...[]int) error {
	for g, hosts := range groups {
		if err := l.bridge(g); err != nil {
			return err
		}
		for _, i := range hosts {
			if i < 0 || i >= len(l.Hosts) {
				return fmt.Errorf("netlab: no host %d", i)
			}
			if err := l.ipIn(l.hub, "link", "set", l.Hosts[i].port, "master", "br"+strconv.Itoa(g)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Heal puts every host back on one bridge.
func (l *Lab) Heal() error {
	all := make([]int, len(l.Hosts))
	for i := range all {
		all[i] = i
	}
	return l.Partition(all)
}

// Close removes every namespace of the lab; the links go with them.
func (l *Lab) Close() error {
	var errs []error
	for _, h := range l.Hosts {
		if err := l.ip("netns", "del", h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.ip("netns", "del", l.hub); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeStale deletes labs whose creating process is gone.
func removeStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, namePrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			exec.Command("ip", "netns", "del", name).Run()
		}
	}
}

func (l *Lab) ipIn(ns string, args ...string) error {
	return l.ip(append([]string{"-n", ns}, args...)...)
}

func (l *Lab) ip(args ...string) error { return run("ip", args...) }

func run(name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netlab: %s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
