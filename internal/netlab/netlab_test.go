//go:build netns

package netlab

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperEnv makes the test binary a tiny network tool inside a namespace:
//
//	listen           accepts and closes connections on :7000
//	dial ADDR        exits 0 when a connection to ADDR:7000 opens within a second
//	connect ADDR     prints the fastest of 5 connects to ADDR:7000, in ms
//	sink             on :7001, reads each connection to its end and answers
//	                 with the SHA-256 of what it read
//	send ADDR N      sends N pseudo-random bytes to a sink at ADDR:7001 and
//	                 prints the seconds until the sink's answer; exits 3 when
//	                 the answer is not the checksum of what was sent
//	udpsink          on UDP :7002, prints "got N reordered M" after the
//	                 datagram "end" (or 10 s)
//	udpsend ADDR N   sends N numbered datagrams to ADDR:7002, one per 200 µs,
//	                 then "end"
//	whoami           on :7003, answers each connection with the address it
//	                 came from
//	ask ADDR         connects from port 7004 to a whoami at ADDR:7003 and
//	                 prints its answer
const helperEnv = "NETLAB_TEST_HELPER"

// helperMain runs the helper named by mode; it never returns.
func helperMain(mode string, args []string) {
	arg := func(i int) string {
		if i >= len(args) {
			os.Exit(2)
		}
		return args[i]
	}
	switch mode {
	case "whoami":
		ln, err := net.Listen("tcp", ":7003")
		if err != nil {
			os.Exit(2)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(2)
			}
			fmt.Fprintln(c, c.RemoteAddr())
			c.Close()
		}
	case "ask":
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{Port: 7004}}
		c, err := d.Dial("tcp", arg(0)+":7003")
		if err != nil {
			os.Exit(1)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Print(line)
		os.Exit(0)
	case "connect":
		best := time.Hour
		for range 5 {
			start := time.Now()
			c, err := net.DialTimeout("tcp", arg(0)+":7000", 5*time.Second)
			if err != nil {
				os.Exit(1)
			}
			best = min(best, time.Since(start))
			c.Close()
		}
		fmt.Printf("%.3f\n", best.Seconds()*1000)
	case "sink":
		ln, err := net.Listen("tcp", ":7001")
		if err != nil {
			os.Exit(2)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(2)
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				io.Copy(h, c)
				c.Write(h.Sum(nil))
			}()
		}
	case "send":
		n, err := strconv.Atoi(arg(1))
		if err != nil {
			os.Exit(2)
		}
		start := time.Now()
		c, err := net.DialTimeout("tcp", arg(0)+":7001", 5*time.Second)
		if err != nil {
			os.Exit(1)
		}
		h := sha256.New()
		src := rand.NewChaCha8([32]byte{1})
		buf := make([]byte, 64<<10)
		for n > 0 {
			b := buf[:min(n, len(buf))]
			src.Read(b)
			h.Write(b)
			if _, err := c.Write(b); err != nil {
				os.Exit(1)
			}
			n -= len(b)
		}
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil {
			os.Exit(1)
		}
		fmt.Printf("%.3f\n", time.Since(start).Seconds())
		if !bytes.Equal(got, h.Sum(nil)) {
			fmt.Fprintf(os.Stderr, "checksum %s, want %s\n", hex.EncodeToString(got), hex.EncodeToString(h.Sum(nil)))
			os.Exit(3)
		}
	case "udpsink":
		pc, err := net.ListenPacket("udp", ":7002")
		if err != nil {
			os.Exit(2)
		}
		got, reordered, last := 0, 0, int64(-1)
		buf := make([]byte, 64)
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil || string(buf[:n]) == "end" {
				break
			}
			if n != 8 {
				continue
			}
			seq := int64(binary.BigEndian.Uint64(buf))
			if seq < last {
				reordered++
			}
			last = seq
			got++
		}
		fmt.Printf("got %d reordered %d\n", got, reordered)
	case "udpsend":
		n, err := strconv.Atoi(arg(1))
		if err != nil {
			os.Exit(2)
		}
		c, err := net.Dial("udp", arg(0)+":7002")
		if err != nil {
			os.Exit(1)
		}
		for i := range n {
			c.Write(binary.BigEndian.AppendUint64(nil, uint64(i)))
			time.Sleep(200 * time.Microsecond)
		}
		time.Sleep(200 * time.Millisecond) // let the numbered ones land first
		c.Write([]byte("end"))
	default:
		os.Exit(2)
	}
	os.Exit(0)
}

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
	case "lab":
		// A lab with both hosts delayed, for a test to kill: it prints the
		// lab's name prefix and waits.
		l, err := New(2)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := l.DelayAll(30 * time.Millisecond); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(l.prefix)
		time.Sleep(time.Minute)
		l.Close()
		os.Exit(0)
	case "":
	default:
		helperMain(os.Getenv(helperEnv), os.Args[1:])
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

// delayLab builds a lab of n hosts for the Delay and Cut tests, with a
// "listen" helper on every host; the lab is closed when the test ends.
func delayLab(t *testing.T, n int) *Lab {
	t.Helper()
	if err := DelayAvailable(); err != nil {
		t.Skip(err)
	}
	l, err := New(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, h := range l.Hosts {
		start(t, l, h, "listen")
	}
	for _, h := range l.Hosts {
		deadline := time.Now().Add(10 * time.Second)
		for helper(l, h, "dial", h.IP).Run() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("listener on host %d did not start", h.Index)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return l
}

// start runs a helper in the background until the test ends.
func start(t *testing.T, l *Lab, h *Host, mode string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := helper(l, h, mode, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// connectMS is the fastest of a few TCP connects from host a to host b.
func connectMS(t *testing.T, l *Lab, a, b int) float64 {
	t.Helper()
	out, err := helper(l, l.Hosts[a], "connect", l.Hosts[b].IP).Output()
	if err != nil {
		t.Fatalf("connect %d→%d: %v", a, b, err)
	}
	ms, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("connect %d→%d: %q", a, b, out)
	}
	return ms
}

// send moves n bytes from host a to the sink on host b, checks they
// arrived intact and returns how long it took.
func send(l *Lab, a, b, n int) (time.Duration, error) {
	var stderr bytes.Buffer
	cmd := helper(l, l.Hosts[a], "send", l.Hosts[b].IP, strconv.Itoa(n))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("send %d→%d: %v %s", a, b, err, stderr.String())
	}
	s, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		return 0, fmt.Errorf("send %d→%d: %q", a, b, out)
	}
	return time.Duration(s * float64(time.Second)), nil
}

// startSink starts a sink on h and waits until it accepts.
func startSink(t *testing.T, l *Lab, h *Host) {
	t.Helper()
	start(t, l, h, "sink")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := send(l, h.Index, h.Index, 1); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("sink on host %d did not start: %v", h.Index, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Delay adds its one-way delay to each direction, only to the delayed
// host's packets, and goes away again at 0.
func TestDelay(t *testing.T) {
	l := delayLab(t, 3)
	if ms := connectMS(t, l, 0, 1); ms >= 15 {
		t.Errorf("connect without delay took %.1f ms, want < 15", ms)
	} else {
		t.Logf("connect without delay: %.2f ms", ms)
	}
	for _, i := range []int{0, 1} {
		if err := l.Delay(l.Hosts[i], 30*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if ms := connectMS(t, l, 0, 1); ms < 55 || ms > 200 {
		t.Errorf("connect between hosts delayed 30 ms each took %.1f ms, want 60", ms)
	} else {
		t.Logf("connect with 30 ms on both ends: %.2f ms", ms)
	}
	if ms := connectMS(t, l, 2, 0); ms < 25 || ms > 55 {
		t.Errorf("connect to one host delayed 30 ms took %.1f ms, want 30", ms)
	} else {
		t.Logf("connect with 30 ms on one end: %.2f ms", ms)
	}
	if err := l.DelayAll(0); err != nil {
		t.Fatal(err)
	}
	if ms := connectMS(t, l, 0, 1); ms >= 15 {
		t.Errorf("connect after removing the delay took %.1f ms, want < 15", ms)
	}
}

// A delayed link still carries what its rate limit allows: 4 MB at
// 10 Mbit/s is 3.2 s, and 2 × 30 ms of delay must not slow that much.
func TestDelayRate(t *testing.T) {
	l := delayLab(t, 2)
	startSink(t, l, l.Hosts[1])
	if err := l.Limit(l.Hosts[0], "10mbit"); err != nil {
		t.Fatal(err)
	}
	if err := l.DelayAll(30 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d, err := send(l, 0, 1, 4_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if d < 2800*time.Millisecond || d > 6400*time.Millisecond {
		t.Errorf("4 MB at 10 Mbit/s with 30 ms each way took %v, want 3.2 s to 6.4 s", d)
	}
	t.Logf("4 MB at 10 Mbit/s with 30 ms each way: %v", d)
}

// The delayer keeps the packets of a host in order, also while the delay
// changes under them, and TCP streams through it arrive intact.
func TestDelayOrder(t *testing.T) {
	l := delayLab(t, 2)
	startSink(t, l, l.Hosts[1])
	if err := l.DelayAll(5 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	const n = 64 << 20
	d, err := send(l, 0, 1, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("64 MiB unlimited with 5 ms each way: %v (%.0f Mbit/s)", d, n*8/d.Seconds()/1e6)

	sink := helper(l, l.Hosts[1], "udpsink")
	var out bytes.Buffer
	sink.Stdout = &out
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sink.Process.Kill(); sink.Wait() }()
	time.Sleep(200 * time.Millisecond) // let it bind
	const datagrams = 3000
	sender := helper(l, l.Hosts[0], "udpsend", l.Hosts[1].IP, strconv.Itoa(datagrams))
	if err := sender.Start(); err != nil {
		t.Fatal(err)
	}
	// Lowering the delay while packets are held is what could reorder them.
	for i := 0; i < 10; i++ {
		d := 40 * time.Millisecond
		if i%2 == 1 {
			d = time.Millisecond
		}
		if err := l.Delay(l.Hosts[0], d); err != nil {
			t.Fatal(err)
		}
		time.Sleep(80 * time.Millisecond)
	}
	if err := sender.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Wait(); err != nil {
		t.Fatal(err)
	}
	var got, reordered int
	if _, err := fmt.Sscanf(out.String(), "got %d reordered %d", &got, &reordered); err != nil {
		t.Fatalf("udpsink said %q", out.String())
	}
	if reordered != 0 || got < datagrams*9/10 {
		t.Errorf("%d of %d datagrams arrived, %d out of order", got, datagrams, reordered)
	}
	t.Logf("%d of %d datagrams arrived, %d out of order", got, datagrams, reordered)
}

// The delayer is no bottleneck: six hosts limited to 100 Mbit/s, all
// delayed, all sending at once, each still gets close to its limit.
func TestDelayKeepsUp(t *testing.T) {
	l := delayLab(t, 6)
	for _, h := range l.Hosts {
		startSink(t, l, h)
		if err := l.Limit(h, "100mbit"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.DelayAll(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	const n = 25_000_000 // 2 s at 100 Mbit/s
	var wg sync.WaitGroup
	times := make([]time.Duration, len(l.Hosts))
	errs := make([]error, len(l.Hosts))
	for i := range l.Hosts {
		wg.Go(func() { times[i], errs[i] = send(l, i, (i+1)%len(l.Hosts), n) })
	}
	wg.Wait()
	for i := range l.Hosts {
		if errs[i] != nil {
			t.Error(errs[i])
		} else if times[i] > 4*time.Second {
			t.Errorf("host %d: 25 MB at 100 Mbit/s with 10 ms each way took %v, want about 2 s", i, times[i])
		}
	}
	t.Logf("25 MB from each of 6 hosts at once, 100 Mbit/s and 10 ms each way: %v", times)
	queued, full, lost := queueStats(t, l)
	if full+lost > 0 {
		t.Errorf("of %d packets queued, %d found the queue full and %d the delayer's socket", queued, full, lost)
	}
	t.Logf("%d packets passed the delayers", queued)
}

// queueStats sums the hub's NFQUEUE counters: packets queued, and dropped
// because a queue was full or because a delayer's socket was.
func queueStats(t *testing.T, l *Lab) (queued, full, lost uint64) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.hub, "cat", "/proc/net/netfilter/nfnetlink_queue").Output()
	if err != nil {
		t.Fatalf("queue counters: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// queue, port id, held, copy mode, copy range, full, lost, last id, 1
		f := strings.Fields(line)
		if len(f) < 8 {
			t.Fatalf("queue counters: %q", line)
		}
		var n [3]uint64
		for i, col := range []int{5, 6, 7} {
			n[i], _ = strconv.ParseUint(f[col], 10, 64)
		}
		full, lost, queued = full+n[0], lost+n[1], queued+n[2]
	}
	return queued, full, lost
}

// Cut isolates one host without touching the others, survives Partition
// and Heal, and Restore brings the host back with its delay.
func TestCut(t *testing.T) {
	l := delayLab(t, 3)
	ping := func(from, to int) bool {
		return helper(l, l.Hosts[from], "dial", l.Hosts[to].IP).Run() == nil
	}
	h := l.Hosts[1]
	if err := l.Delay(h, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := l.Cut(h); err != nil {
		t.Fatal(err)
	}
	if err := l.Cut(h); err != nil { // twice is once
		t.Fatal(err)
	}
	if ping(0, 1) || ping(1, 2) {
		t.Error("traffic reached a cut host")
	}
	if !ping(0, 2) {
		t.Error("cutting host 1 cut hosts 0 and 2 apart")
	}
	if err := l.Partition([]int{0, 1}, []int{2}); err != nil {
		t.Fatal(err)
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	if ping(0, 1) {
		t.Error("healing a partition undid a cut")
	}
	if err := l.Restore(h); err != nil {
		t.Fatal(err)
	}
	restored := false
	for deadline := time.Now().Add(5 * time.Second); !restored && time.Now().Before(deadline); {
		restored = ping(0, 1) && ping(1, 2)
	}
	if !restored {
		t.Fatal("Restore did not bring the host back")
	}
	if ms := connectMS(t, l, 0, 1); ms < 18 {
		t.Errorf("connect to a restored host delayed 20 ms took %.1f ms", ms)
	}
}

// Close stops the delayers and leaves no namespace, rule or socket behind.
func TestDelayClose(t *testing.T) {
	if err := DelayAvailable(); err != nil {
		t.Skip(err)
	}
	rules := func() string {
		var all []byte
		for _, tool := range []string{"iptables", "ip6tables"} {
			out, err := exec.Command(tool, "-w", "-S").Output()
			if err != nil {
				t.Fatalf("%s -S: %v", tool, err)
			}
			all = append(all, out...)
		}
		return string(all)
	}
	sockets := func() int {
		n := 0
		fds, _ := os.ReadDir("/proc/self/fd")
		for _, fd := range fds {
			if dst, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.HasPrefix(dst, "socket:") {
				n++
			}
		}
		return n
	}
	rulesBefore, socketsBefore := rules(), sockets()
	l, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DelayAll(10 * time.Millisecond); err != nil {
		l.Close()
		t.Fatal(err)
	}
	if err := l.Cut(l.Hosts[0]); err != nil {
		l.Close()
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", l.hub, "iptables", "-w", "-S", "FORWARD").Output()
	if err != nil || strings.Count(string(out), "NFQUEUE") != 2 || strings.Count(string(out), "DROP") != 2 {
		t.Errorf("hub rules with both hosts delayed and host 0 cut:\n%s %v", out, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if list, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(list), l.prefix) {
		t.Errorf("namespaces left after Close:\n%s", list)
	}
	if after := rules(); after != rulesBefore {
		t.Errorf("rules changed by the lab:\nbefore:\n%s\nafter:\n%s", rulesBefore, after)
	}
	// The delayers' sockets would keep the hub namespace alive.
	if n := sockets(); n != socketsBefore {
		t.Errorf("%d sockets open after Close, %d before New", n, socketsBefore)
	}
	if len(l.delays) != 0 {
		t.Errorf("%d delayers left after Close", len(l.delays))
	}
}

// If the process running the delayers dies, traffic flows on undelayed
// (--queue-bypass) instead of being stuck in a queue nobody reads.
func TestDelayProcessDies(t *testing.T) {
	if err := DelayAvailable(); err != nil {
		t.Skip(err)
	}
	exe, _ := os.Executable()
	owner := exec.Command(exe)
	owner.Env = append(os.Environ(), helperEnv+"=lab")
	stdout, err := owner.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	owner.Stderr = os.Stderr
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { owner.Process.Kill(); owner.Wait(); removeStale() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("lab owner: %v", err)
	}
	prefix := strings.TrimSpace(line)
	// Its lab, seen from here: Command needs nothing but the namespaces.
	l := &Lab{prefix: prefix, Hosts: []*Host{{Index: 0, NS: prefix + "0", IP: "10.213.0.1"}, {Index: 1, NS: prefix + "1", IP: "10.213.0.2"}}}
	start(t, l, l.Hosts[1], "listen")
	deadline := time.Now().Add(10 * time.Second)
	for helper(l, l.Hosts[1], "dial", l.Hosts[1].IP).Run() != nil {
		if time.Now().After(deadline) {
			t.Fatal("listener did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := connectMS(t, l, 0, 1)
	if before < 55 {
		t.Fatalf("connect in the other process's lab took %.1f ms, want 60", before)
	}
	owner.Process.Kill()
	owner.Wait()
	after := connectMS(t, l, 0, 1)
	if after >= 15 {
		t.Errorf("connect after the delaying process died took %.1f ms, want < 15", after)
	}
	t.Logf("connect with the delaying process alive: %.2f ms, after it died: %.2f ms", before, after)
}

// The NAT lab's promises: home hosts reach public ones, which see the
// router's public address (with the inside port kept, or a random one on
// a strict router); nothing on the public side reaches a home host
// unsolicited, neither at the router's address nor at its own.
//
//	sudo go test -tags netns -run TestNAT -v ./internal/netlab/
func TestNAT(t *testing.T) {
	if err := DelayAvailable(); err != nil {
		t.Skip(err)
	}
	n, err := NewNAT(1, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Strict(1); err != nil {
		t.Fatal(err)
	}
	pub, homeA, homeB := n.Hosts[0], n.Homes[0][0], n.Homes[1][0]
	for _, h := range []*Host{pub, homeA, homeB} {
		start(t, n.Lab, h, "whoami")
		start(t, n.Lab, h, "listen")
	}
	ask := func(from *Host, ip string) (string, error) {
		var out []byte
		var err error
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if out, err = helper(n.Lab, from, "ask", ip).Output(); err == nil {
				break
			}
		}
		return strings.TrimSpace(string(out)), err
	}
	if got, err := ask(pub, pub.IP); err != nil {
		t.Fatalf("whoami on the public host never answered: %v", err)
	} else {
		t.Logf("public host sees itself as %s", got)
	}
	got, err := ask(homeA, pub.IP)
	if err != nil {
		t.Fatalf("home host cannot reach the public host: %v", err)
	}
	if want := n.Routers[0].IP + ":7004"; got != want {
		t.Errorf("the public host saw home A as %s, want %s (router address, port kept)", got, want)
	}
	got, err = ask(homeB, pub.IP)
	if err != nil {
		t.Fatalf("strict home host cannot reach the public host: %v", err)
	}
	if host, port, _ := net.SplitHostPort(got); host != n.Routers[1].IP || port == "7004" {
		t.Errorf("the public host saw strict home B as %s, want %s with a random port", got, n.Routers[1].IP)
	}
	dial := func(from *Host, ip string) bool { return helper(n.Lab, from, "dial", ip).Run() == nil }
	for _, ip := range []string{n.Routers[0].IP, homeA.IP, n.Routers[1].IP, homeB.IP} {
		if dial(pub, ip) {
			t.Errorf("the public host reached %s:7000 unsolicited", ip)
		}
	}
	if dial(homeB, homeA.IP) || dial(homeB, n.Routers[0].IP) {
		t.Error("home B reached home A unsolicited")
	}
	if !dial(homeA, pub.IP) {
		t.Error("home A cannot dial the public host")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	list, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(list), n.prefix) {
		t.Errorf("namespaces left after Close:\n%s", list)
	}
}
