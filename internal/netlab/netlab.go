// Package netlab builds a small network for fault tests out of Linux
// network namespaces: N hosts, each in its own namespace with one veth
// link to a hub namespace that holds the bridges. Everything lives in
// namespaces the lab created (nothing is added to the caller's own
// network), addresses are private to the lab, and Close removes it all.
//
// Faults it can cause: rate limits on a host's link (tc tbf), one-way
// delay on what a host sends (Delay), partitions (hosts moved onto
// separate bridges, so packets between groups are silently dropped, as on
// a real cut) and healing them, and cutting a single host off (Cut).
//
// This kernel has no netem, so delay is done in user space: an iptables
// NFQUEUE rule in the hub passes the host's packets to a delayer running
// in this process, which holds each one for the delay and then lets it
// through, in order. The rule has --queue-bypass: if the process dies,
// the kernel unbinds the queue and traffic flows on, undelayed, rather
// than stopping.
//
// NewNAT builds a lab shaped like home internet: public hosts plus home
// networks behind masquerading routers (see NAT).
//
// It needs root and iproute2 (ip, tc); Delay, Cut and NewNAT also need iptables
// and bridge netfilter (see DelayAvailable).
package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
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
	groups int      // bridges in use by the current partition
	extra  []string // namespaces besides the hub's and Hosts' (NAT routers, home hosts)

	mu        sync.Mutex       // guards the fields below
	filtering bool             // bridged packets pass through iptables in the hub
	delays    map[int]*delayer // by host index
	cut       map[int]bool     // by host index
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

// DelayAvailable reports why Delay and Cut cannot be used here, or nil.
// Besides what Available checks they need iptables and ip6tables, bridge
// netfilter (loaded with modprobe when missing) and, in the kernel, the
// physdev match, the NFQUEUE target and nfnetlink_queue.
func DelayAvailable() error {
	if err := Available(); err != nil {
		return err
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (install iptables)", tool)
		}
	}
	if _, err := os.Stat(brnfDir); err != nil {
		if _, err := exec.LookPath("modprobe"); err != nil {
			return errors.New("bridge netfilter (br_netfilter) is not loaded and there is no modprobe to load it")
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
	return newLab(n, "10.213.0.%d")
}

// newLab builds n hosts on bridge br0 with addresses ipFormat's /24
// (ipFormat takes the host's number, from 1). n may be 0: a hub alone.
func newLab(n int, ipFormat string) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	removeStale()
	l := &Lab{prefix: namePrefix + strconv.Itoa(os.Getpid()) + "-", delays: map[int]*delayer{}, cut: map[int]bool{}}
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
		h := &Host{Index: i, NS: l.prefix + strconv.Itoa(i), IP: fmt.Sprintf(ipFormat, i+1), port: "p" + strconv.Itoa(i)}
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

// Delay adds d of one-way delay to every packet host h sends into the lab
// (so a round trip between two delayed hosts gains 2d). d == 0 removes it.
//
// The delay is added in the hub, after h's rate limit, like the
// propagation time of a long cable. Packets keep their order, also when d
// changes. IPv4 and IPv6 packets are delayed; ARP is not. If this process
// dies, packets flow undelayed (see the package comment); if h's delayer
// failed, the next call to Delay reports why and the one after that
// starts a new one.
func (l *Lab) Delay(h *Host, d time.Duration) error {
	if err := l.own(h); err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("netlab: negative delay %v", d)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	dl := l.delays[h.Index]
	if dl != nil {
		select {
		case <-dl.done: // it failed
			delete(l.delays, h.Index)
			return errors.Join(dl.stop(false), l.rules("-D", delayRule(h)...))
		default:
		}
	}
	if d == 0 {
		if dl == nil {
			return nil
		}
		// The rule goes first, so the delayer is stopped only once no new
		// packet can reach it, and what it holds still gets its delay.
		delete(l.delays, h.Index)
		return errors.Join(l.rules("-D", delayRule(h)...), dl.stop(true))
	}
	if dl != nil {
		dl.delay.Store(int64(d))
		return nil
	}
	if err := l.enableFiltering(); err != nil {
		return err
	}
	dl, err := startDelayer(netnsPath(l.hub), uint16(h.Index), d)
	if err != nil {
		return err
	}
	// Appended: Cut's drop rules, inserted at the top, come first, so a cut
	// host's packets are dropped, not delayed.
	if err := l.rules("-A", delayRule(h)...); err != nil {
		return errors.Join(err, dl.stop(false))
	}
	l.delays[h.Index] = dl
	return nil
}

// DelayAll sets the one-way delay of every host to d (see Delay).
func (l *Lab) DelayAll(d time.Duration) error {
	for _, h := range l.Hosts {
		if err := l.Delay(h, d); err != nil {
			return err
		}
	}
	return nil
}

// delayRule queues what h sends into the bridge on queue h.Index. With
// --queue-bypass packets pass when no delayer is bound to the queue.
func delayRule(h *Host) []string {
	return []string{"FORWARD", "-m", "physdev", "--physdev-in", h.port, "-j", "NFQUEUE", "--queue-num", strconv.Itoa(h.Index), "--queue-bypass"}
}

// Cut isolates host h from every other host (packets dropped silently, as
// a cut cable); Restore undoes it.
//
// It is done with iptables rules in the hub that drop every IPv4 and IPv6
// packet entering or leaving the bridge through h's port, ahead of the
// delay rules. So it composes with Partition and Heal (which move ports
// between bridges and leave the rules alone) and with Delay (h keeps its
// delay, and gets it back on Restore). ARP still passes, so neighbours
// stay resolved: the hosts see silence, not "host unreachable".
func (l *Lab) Cut(h *Host) error {
	if err := l.own(h); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut[h.Index] {
		return nil
	}
	if err := l.enableFiltering(); err != nil {
		return err
	}
	for _, dir := range []string{"--physdev-in", "--physdev-out"} {
		if err := l.rules("-I", "FORWARD", "1", "-m", "physdev", dir, h.port, "-j", "DROP"); err != nil {
			return err
		}
	}
	l.cut[h.Index] = true
	return nil
}

// Restore reconnects a host that Cut isolated.
func (l *Lab) Restore(h *Host) error {
	if err := l.own(h); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cut[h.Index] {
		return nil
	}
	var errs []error
	for _, dir := range []string{"--physdev-in", "--physdev-out"} {
		errs = append(errs, l.rules("-D", "FORWARD", "-m", "physdev", dir, h.port, "-j", "DROP"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	delete(l.cut, h.Index)
	return nil
}

func (l *Lab) own(h *Host) error {
	if h == nil || h.Index < 0 || h.Index >= len(l.Hosts) || l.Hosts[h.Index] != h {
		return errors.New("netlab: host is not part of this lab")
	}
	return nil
}

// rules runs the same iptables command for IPv4 and IPv6 in the hub.
func (l *Lab) rules(op string, rule ...string) error {
	for _, tool := range []string{"iptables", "ip6tables"} {
		if err := l.ip(append([]string{"netns", "exec", l.hub, tool, "-w", op}, rule...)...); err != nil {
			return err
		}
	}
	return nil
}

const brnfDir = "/proc/sys/net/bridge"

// enableFiltering makes the hub's bridges pass packets through iptables,
// which the Delay and Cut rules need. Since Linux 5.3 these switches are
// per network namespace (new ones start at 1) and only the hub's are
// touched. On older kernels they are global: there they are written only
// if not already 1, and then iptables sees the packets of every bridge of
// the machine, which matters only to bridges with firewall rules.
func (l *Lab) enableFiltering() error {
	if l.filtering {
		return nil
	}
	if err := DelayAvailable(); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	if _, err := os.Stat(brnfDir); err != nil {
		if err := run("modprobe", "br_netfilter"); err != nil {
			return err
		}
	}
	err := inNS(netnsPath(l.hub), func() error {
		for _, name := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
			p := filepath.Join(brnfDir, name)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(b)) == "1" {
				continue
			}
			if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netlab: enabling bridge netfilter in %s: %w", l.hub, err)
	}
	l.filtering = true
	return nil
}

func netnsPath(name string) string { return filepath.Join("/var/run/netns", name) }

// Close stops the delayers and removes every namespace of the lab; the
// links and iptables rules go with them.
func (l *Lab) Close() error {
	var errs []error
	l.mu.Lock()
	for i, dl := range l.delays {
		errs = append(errs, dl.stop(false))
		delete(l.delays, i)
	}
	l.mu.Unlock()
	for _, h := range l.Hosts {
		if err := l.ip("netns", "del", h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range l.extra {
		if err := l.ip("netns", "del", ns); err != nil {
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
