//go:build netns

package netlab

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary a tiny TCP tool inside a namespace:
// "listen" accepts and closes connections on :7000, "dial ADDR" exits 0
// when a connection to ADDR:7000 opens within a second.
const helperEnv = "NETLAB_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "listen":
		ln, err := net.Listen("tcp", ":7000")
		if err != nil {
			os.Exit(2)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(2)
			}
			c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", os.Args[len(os.Args)-1]+":7000", time.Second)
		if err != nil {
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(l *Lab, h *Host, mode string, args ...string) *exec.Cmd {
	exe, _ := os.Executable()
	cmd := l.Command(h, exe, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

// The lab's own promises: hosts reach each other, a partition drops
// traffic between groups but not within them, healing restores it, a rate
// limit is installed, and Close leaves no namespace behind.
//
//	sudo go test -tags netns ./internal/netlab/
func TestLab(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	l, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, h := range l.Hosts {
		cmd := helper(l, h, "listen")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
	}
	ping := func(from, to int) bool {
		return helper(l, l.Hosts[from], "dial", l.Hosts[to].IP).Run() == nil
	}
	for i := range l.Hosts { // wait for each listener
		deadline := time.Now().Add(10 * time.Second)
		for !ping(i, i) {
			if time.Now().After(deadline) {
				t.Fatalf("listener on host %d did not start", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !ping(0, 3) {
		t.Fatal("hosts 0 and 3 cannot reach each other")
	}
	if err := l.Partition([]int{0, 1}, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	if ping(0, 2) || ping(3, 1) {
		t.Error("traffic crossed the partition")
	}
	if !ping(0, 1) || !ping(2, 3) {
		t.Error("a side of the partition cannot reach itself")
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	// Neighbour entries that failed during the partition are retried on
	// the kernel's ARP timer: allow a few seconds.
	healed := false
	for deadline := time.Now().Add(5 * time.Second); !healed && time.Now().Before(deadline); {
		healed = ping(0, 2) && ping(3, 1)
	}
	if !healed {
		t.Error("healing did not restore traffic")
	}
	if err := l.Limit(l.Hosts[0], "10mbit"); err != nil {
		t.Fatal(err)
	}
	out, err := l.Command(l.Hosts[0], "tc", "qdisc", "show", "dev", "eth0").Output()
	if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "10Mbit") {
		t.Errorf("rate limit not installed: %s %v", out, err)
	}
	if err := l.Limit(l.Hosts[0], ""); err != nil {
		t.Error(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	list, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(list), l.prefix) {
		t.Errorf("namespaces left after Close:\n%s", list)
	}
}
