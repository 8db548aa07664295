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
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/swarmtrain/swarmtrain/internal/netlab"
)

// helperEnv makes the test binary one end of a measurement inside a lab
// namespace: "sink" serves sinkProto and echoProto on tcp/4001 until its
// stdin closes; "probe ADDR BULK STREAMS" pushes BULK bytes on each of
// STREAMS streams to ADDR while timing small echoes on another, and prints
// a probeResult as JSON. Both read TCPNotSentLowat and MaxStreamWindow from
// the environment.
const helperEnv = "P2P_NETNS_HELPER"

// sinkKey seeds the sink's identity, so the probe knows its peer ID.
var sinkKey = bytes.Repeat([]byte{7}, 64)

type probeResult struct {
	Idle   []float64 // echo round trips before the bulk transfer, ms
	Busy   []float64 // echo round trips during it, ms
	BusyAt []float64 // when each of Busy began, s after the connection opened
	BulkS  float64   // seconds the bulk transfer took
	Errors []string
}

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "sink":
		h := helperHost(sinkKey, "/ip4/0.0.0.0/tcp/4001")
		serveSink(h, 1<<20)
		serveEcho(h)
		io.Copy(io.Discard, os.Stdin)
		h.Close()
	case "crossdial":
		crossDial(os.Args[len(os.Args)-2], os.Args[len(os.Args)-1])
	case "redial":
		redial(os.Args[len(os.Args)-2], os.Args[len(os.Args)-1])
	case "reach":
		args := os.Args[2:] // after -test.run=^$
		reachHost(args[0], args[1:])
	case "probe":
		a := os.Args[len(os.Args)-3:]
		bulk, _ := strconv.Atoi(a[1])
		streams, _ := strconv.Atoi(a[2])
		r := probe(helperHost(nil), a[0], bulk, streams)
		json.NewEncoder(os.Stdout).Encode(r)
	}
	os.Exit(0)
}

// helperHost starts a host with the test's settings from the environment.
func helperHost(seed []byte, listen ...string) *Host {
	cfg := DefaultConfig()
	cfg.ListenAddrs = listen
	var rnd io.Reader
	if seed != nil {
		rnd = bytes.NewReader(seed)
	}
	key, _, err := crypto.GenerateEd25519Key(rnd)
	if err != nil {
		panic(err)
	}
	cfg.Identity = key
	for name, f := range map[string]*int{"TCP_NOTSENT_LOWAT": &cfg.TCPNotSentLowat, "MAX_STREAM_WINDOW": &cfg.MaxStreamWindow} {
		if v := os.Getenv(name); v != "" {
			if *f, err = strconv.Atoi(v); err != nil {
				panic(err)
			}
		}
	}
	h, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return h
}

// probe times 64-byte echoes, one at a time, first on an idle connection
// and then while streams bulk streams each send bulk bytes in 1 MiB frames.
func probe(h *Host, addr string, bulk, streams int) (r probeResult) {
	fail := func(err error) probeResult { r.Errors = append(r.Errors, err.Error()); return r }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	id, err := h.Connect(ctx, addr)
	if err != nil {
		return fail(err)
	}
	connected := time.Now()
	ns, err := h.NewStream(ctx, id, echoProto)
	if err != nil {
		return fail(err)
	}
	echo := NewStream(ns, time.Minute)
	ping := func() (float64, error) {
		start := time.Now()
		if err := echo.Send(make([]byte, 64)); err != nil {
			return 0, err
		}
		if _, err := echo.Recv(1 << 10); err != nil {
			return 0, err
		}
		return float64(time.Since(start).Microseconds()) / 1000, nil
	}
	for range 20 {
		ms, err := ping()
		if err != nil {
			return fail(err)
		}
		r.Idle = append(r.Idle, ms)
		time.Sleep(20 * time.Millisecond)
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	done := make(chan struct{})
	start := time.Now()
	for range streams {
		wg.Go(func() {
			if err := push(ctx, h, id, bulk); err != nil {
				mu.Lock()
				r.Errors = append(r.Errors, err.Error())
				mu.Unlock()
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	time.Sleep(500 * time.Millisecond) // let the bulk data fill the queues
	for {
		select {
		case <-done:
			r.BulkS = time.Since(start).Seconds()
			return r
		default:
		}
		at := time.Since(connected).Seconds()
		ms, err := ping()
		if err != nil {
			return fail(err)
		}
		r.Busy = append(r.Busy, ms)
		r.BusyAt = append(r.BusyAt, at)
		time.Sleep(20 * time.Millisecond)
	}
}

// push sends n bytes on a new sinkProto stream and waits for the ack.
func push(ctx context.Context, h *Host, id peer.ID, n int) error {
	ns, err := h.NewStream(ctx, id, sinkProto)
	if err != nil {
		return err
	}
	s := NewStream(ns, time.Minute)
	frame := make([]byte, 1<<20)
	for n > 0 {
		f := frame[:min(n, len(frame))]
		if err := s.Send(f); err != nil {
			s.Reset()
			return fmt.Errorf("bulk: %w", err)
		}
		n -= len(f)
	}
	if err := s.CloseWrite(); err != nil {
		return err
	}
	if _, err := s.Recv(0); err != nil {
		s.Reset()
		return fmt.Errorf("bulk ack: %w", err)
	}
	return s.Close()
}

func percentile(ms []float64, p float64) float64 {
	if len(ms) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ms))
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// A small frame's round trip on one stream while another stream pushes
// 48 MiB through a 10 Mbit/s link, for 42 s. The frame waits behind the
// bulk data the connection has queued, which the sending stream's yamux
// window bounds. With libp2p's settings (16 MiB windows, no
// TCP_NOTSENT_LOWAT) the window doubles once yamux's periodic ping (every
// 30 s) has measured the queue it built, and so on; with DefaultConfig it
// stays at 512 KiB, 0.4 s at this rate. The lab adds no delay, so before
// that first ping the windows stay small either way.
//
//	sudo go test -tags netns -run TestSlowLinkLatency -v ./p2p/
func TestSlowLinkLatency(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// bytes; ms, for DefaultConfig's p90 once yamux has resized its windows
	const bulk, limit = 48 << 20, 350.0
	def := DefaultConfig()
	for _, tc := range []struct {
		name          string
		lowat, window int
	}{
		{"libp2p", 0, maxStreamWindow},
		{"default", def.TCPNotSentLowat, def.MaxStreamWindow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := slowLinkProbe(t, exe, tc.lowat, tc.window, bulk)
			var early, late []float64
			for i, at := range r.BusyAt {
				if at < 30 {
					early = append(early, r.Busy[i])
				} else {
					late = append(late, r.Busy[i])
				}
			}
			t.Logf("TCPNotSentLowat %d, MaxStreamWindow %d: %d MiB in %.1f s (%.2f Mbit/s); echo idle p50 %.1f ms; during the transfer p50 %.0f p90 %.0f max %.0f ms (first 30 s: p50 %.0f; after: p50 %.0f max %.0f)",
				tc.lowat, tc.window, bulk>>20, r.BulkS, bulk*8/r.BulkS/1e6, percentile(r.Idle, 0.5),
				percentile(r.Busy, 0.5), percentile(r.Busy, 0.9), percentile(r.Busy, 1),
				percentile(early, 0.5), percentile(late, 0.5), percentile(late, 1))
			if p90 := percentile(late, 0.9); tc.name == "default" && (len(late) == 0 || p90 > limit) {
				t.Errorf("after 30 s of bulk data, echo p90 %.0f ms (%d echoes), want <= %.0f", p90, len(late), limit)
			}
		})
	}
}

// slowLinkProbe runs a sink and a probe in a two-host lab whose links are
// limited to 10 Mbit/s, both with the given settings.
func slowLinkProbe(t *testing.T, exe string, lowat, window, bulk int) probeResult {
	l, err := netlab.New(2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, h := range l.Hosts {
		if err := l.Limit(h, "10mbit"); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "TCP_NOTSENT_LOWAT="+strconv.Itoa(lowat), "MAX_STREAM_WINDOW="+strconv.Itoa(window))
	sink := l.Command(l.Hosts[0], exe)
	sink.Env = append(env, helperEnv+"=sink")
	sink.Stderr = os.Stderr
	stdin, err := sink.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); sink.Wait() }()
	key, _, err := crypto.GenerateEd25519Key(bytes.NewReader(sinkKey))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", l.Hosts[0].IP, id)
	for range 50 { // until the sink listens
		p := l.Command(l.Hosts[1], exe, "-test.run=^$", addr, strconv.Itoa(bulk), "1")
		p.Env = append(env, helperEnv+"=probe")
		p.Stderr = os.Stderr
		out, err := p.Output()
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		var r probeResult
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("probe printed %q: %v", out, err)
		}
		if len(r.Errors) == 0 {
			return r
		}
		if !strings.Contains(r.Errors[0], "connection refused") {
			t.Fatalf("probe: %v", r.Errors)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the sink never listened")
	return probeResult{}
}

// crossDial is one side of TestSimultaneousDial: a host with identity
// seed listening on tcp/4001 says "ready", waits for a line on stdin, then
// dials addr once and prints the outcome.
func crossDial(seed, addr string) {
	h := helperHost(bytes.Repeat([]byte(seed[:1]), 64), "/ip4/0.0.0.0/tcp/4001")
	defer h.Close()
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.Connect(ctx, addr)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("connected")
	fmt.Println("simultaneous opens:", h.SimultaneousOpens())
	io.Copy(io.Discard, os.Stdin) // stay up until the other side has answered too
}

// Two peers that dial each other at the same moment both connect on the
// first try. Each host's packets take 50 ms to cross the lab, so the two
// SYNs are in flight at once: dialing from the listen port (SO_REUSEPORT)
// they often meet as a TCP simultaneous open, where both ends would start
// TLS as the client and both dials fail; simopen.go settles the roles.
//
//	sudo go test -tags netns -run TestSimultaneousDial -v ./p2p/
func TestSimultaneousDial(t *testing.T) {
	if err := netlab.DelayAvailable(); err != nil {
		t.Skip(err)
	}
	for try := range 5 {
		l, err := netlab.New(2)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.DelayAll(50 * time.Millisecond); err != nil {
			l.Close()
			t.Fatal(err)
		}
		seeds := []string{"a", "b"}
		addrs := make([]string, 2)
		for i, seed := range seeds {
			key, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte(seed), 64)))
			if err != nil {
				t.Fatal(err)
			}
			id, _ := peer.IDFromPrivateKey(key)
			addrs[i] = fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", l.Hosts[i].IP, id)
		}
		outs := make([]*bufio.Reader, 2)
		ins := make([]io.WriteCloser, 2)
		for i := range 2 {
			hp := startHelper(t, l, l.Hosts[i], "crossdial", "ready", seeds[i], addrs[1-i])
			defer hp.close()
			ins[i], outs[i] = hp.in, hp.out
		}
		for _, in := range ins { // both at once
			io.WriteString(in, "go\n")
		}
		for i := range 2 {
			line, err := outs[i].ReadString('\n')
			if line != "connected\n" {
				t.Errorf("try %d: host %d dialing host %d at the same time: %q %v", try, i, 1-i, strings.TrimSpace(line), err)
			}
		}
		for _, in := range ins {
			in.Close()
		}
		l.Close()
	}
}

// redial is the surviving peer of TestRejoinSameAddress: a host with
// identity seed on tcp/4001 that, once the peer at addr has connected to it
// and gone, redials addr without pause (clearing libp2p's dial backoff, as
// a node that keeps trying would) until stdin closes.
func redial(seed, addr string) {
	h := helperHost(bytes.Repeat([]byte(seed[:1]), 64), "/ip4/0.0.0.0/tcp/4001")
	defer h.Close()
	info, err := peer.AddrInfoFromString(addr)
	if err != nil {
		panic(err)
	}
	fmt.Println("ready")
	quit := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(quit) }()
	for h.Network().Connectedness(info.ID) != network.Connected {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("joined")
	for h.Network().Connectedness(info.ID) == network.Connected {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("lost")
	for {
		select {
		case <-quit:
			return
		default:
		}
		h.Network().(*swarm.Swarm).Backoff().Clear(info.ID)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h.Host.Connect(ctx, *info)
		cancel()
	}
}

// A node that starts on the IP and port of a peer that just died, while
// the others still redial that address, joins on the first try. Host 0
// keeps redialing host 1's address from its listen port; host 1 restarts
// (same identity, same port) and dials host 0 once. Left to chance the
// two SYNs cross only sometimes; to make every try a TCP simultaneous
// open, host 0's packets to host 1 are dropped while host 1 restarts
// (host 0's redial waits in SYN-SENT, and host 1's SYN meets it), then let
// through, so the retransmitted SYN-ACKs complete one connection that both
// ends dialed.
//
//	sudo go test -tags netns -run TestRejoinSameAddress -v ./p2p/
func TestRejoinSameAddress(t *testing.T) {
	if err := netlab.DelayAvailable(); err != nil {
		t.Skip(err)
	}
	const tries = 4
	sims := 0
	for try := range tries {
		l, err := netlab.New(2)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.DelayAll(50 * time.Millisecond); err != nil {
			l.Close()
			t.Fatal(err)
		}
		seeds := []string{"a", "b"}
		addrs := make([]string, 2)
		for i, seed := range seeds {
			key, _, _ := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte(seed), 64)))
			id, _ := peer.IDFromPrivateKey(key)
			addrs[i] = fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", l.Hosts[i].IP, id)
		}
		start := func(i int, mode string) (*bufio.Reader, io.WriteCloser, func()) {
			hp := startHelper(t, l, l.Hosts[i], mode, "ready", seeds[i], addrs[1-i])
			return hp.out, hp.in, hp.kill
		}
		expect := func(r *bufio.Reader, who, want string) {
			if line, err := r.ReadString('\n'); line != want+"\n" {
				t.Fatalf("try %d: %s printed %q (%v), want %q", try, who, line, err, want)
			}
		}
		outA, inA, stopA := start(0, "redial")
		outB, inB, stopB := start(1, "crossdial")
		io.WriteString(inB, "go\n")
		expect(outB, "first host 1", "connected")
		expect(outA, "host 0", "joined")
		stopB() // dies: no goodbye
		expect(outA, "host 0", "lost")
		// In host 1's namespace: a drop in host 0's OUTPUT would fail its
		// connect at once (EPERM) instead of leaving it waiting.
		drop := []string{"INPUT", "-s", l.Hosts[0].IP, "-p", "tcp", "-j", "DROP"}
		iptables := func(op string) {
			if out, err := l.Command(l.Hosts[1], "iptables", append([]string{"-w", op}, drop...)...).CombinedOutput(); err != nil {
				t.Fatalf("iptables %s: %v: %s", op, err, out)
			}
		}
		iptables("-I")
		time.Sleep(300 * time.Millisecond) // host 0's redial now waits in SYN-SENT
		outB, inB, stopB = start(1, "crossdial")
		io.WriteString(inB, "go\n")
		time.Sleep(200 * time.Millisecond) // host 1's SYN has reached host 0
		iptables("-D")
		line, err := outB.ReadString('\n')
		if line != "connected\n" {
			t.Errorf("try %d: host 1 restarted on its address: %q %v", try, strings.TrimSpace(line), err)
		}
		if line, _ := outB.ReadString('\n'); strings.HasPrefix(line, "simultaneous opens: ") {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "simultaneous opens: ")))
			sims += n
		}
		inA.Close()
		inB.Close()
		stopB()
		stopA()
		l.Close()
	}
	if sims != tries {
		t.Errorf("%d of %d restarts met host 0's redial as a TCP simultaneous open, want all: the test no longer covers that case", sims, tries)
	}
}

// helperProc is this test binary running as a helper (helperEnv=mode) in
// one of a lab's namespaces, driven through its stdin and stdout.
type helperProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// startHelper starts the helper in h's namespace with args and waits for
// its first line, which must be ready.
func startHelper(t *testing.T, l *netlab.Lab, h *netlab.Host, mode, ready string, args ...string) *helperProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := l.Command(h, exe, append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hp := &helperProc{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if line, err := hp.out.ReadString('\n'); line != ready+"\n" {
		hp.kill()
		t.Fatalf("%s helper in %s: %q, %v; want %q", mode, h.IP, line, err, ready)
	}
	return hp
}

// close ends the helper's input (it exits once it has answered) and waits.
func (hp *helperProc) close() { hp.in.Close(); hp.cmd.Wait() }

// kill ends the helper at once, as a crash would.
func (hp *helperProc) kill() { hp.cmd.Process.Kill(); hp.cmd.Wait() }
