package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

const echoProto = protocol.ID("/swarmtrain/test/echo/1")

// serveEcho answers every frame with the frame reversed until the peer
// half-closes, then closes. Any error resets, as real handlers must.
func serveEcho(h *Host) {
	h.SetStreamHandler(echoProto, func(ns network.Stream) {
		s := NewStream(ns, 5*time.Second)
		for {
			msg, err := s.Recv(1 << 20)
			if err == io.EOF {
				s.Close()
				return
			}
			if err != nil {
				s.Reset()
				return
			}
			for i, j := 0, len(msg)-1; i < j; i, j = i+1, j-1 {
				msg[i], msg[j] = msg[j], msg[i]
			}
			if err := s.Send(msg); err != nil {
				s.Reset()
				return
			}
		}
	})
}

// pickAddr returns the first JoinAddr that contains want (e.g. "/tcp/").
func pickAddr(t *testing.T, h *Host, want string) string {
	t.Helper()
	for _, a := range h.JoinAddrs() {
		if strings.Contains(a, want) {
			return a
		}
	}
	t.Fatalf("no JoinAddr with %q in %v", want, h.JoinAddrs())
	return ""
}

func TestHostsExchangeFrames(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"tcp", "/tcp/"},
		{"quic", "/quic-v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newTestHost(t, t.TempDir()), newTestHost(t, "")
			serveEcho(a)
			serveEcho(b)
			ctx := testCtx(t, 10*time.Second)

			// Dial with one address only, so that transport is the one used.
			id, err := a.Connect(ctx, pickAddr(t, b, tc.addr))
			if err != nil {
				t.Fatal(err)
			}
			if id != b.ID() {
				t.Fatalf("Connect returned %s, want %s", id, b.ID())
			}
			conns := a.Network().ConnsToPeer(b.ID())
			if len(conns) != 1 {
				t.Fatalf("%d connections, want 1", len(conns))
			}
			if got := conns[0].RemoteMultiaddr().String(); !strings.Contains(got, tc.addr) {
				t.Fatalf("connection runs over %s, want %s", got, tc.addr)
			}

			inA, outA := a.BytesIn(), a.BytesOut()
			// a → b and back, then b → a and back, over the same connection.
			for _, pair := range [][2]*Host{{a, b}, {b, a}} {
				from, to := pair[0], pair[1]
				ns, err := from.NewStream(ctx, to.ID(), echoProto)
				if err != nil {
					t.Fatal(err)
				}
				s := NewStream(ns, 5*time.Second)
				if s.RemotePeer() != to.ID() {
					t.Fatalf("RemotePeer %s, want %s", s.RemotePeer(), to.ID())
				}
				for _, msg := range []string{"hello", "", strings.Repeat("x", 300<<10) + "y"} {
					if err := s.Send([]byte(msg)); err != nil {
						t.Fatal(err)
					}
					got, err := s.Recv(1 << 20)
					if err != nil {
						t.Fatal(err)
					}
					if want := reverse(msg); !bytes.Equal(got, []byte(want)) {
						t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(got))
					}
				}
				if err := s.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Recv(1); err != io.EOF {
					t.Fatalf("after CloseWrite: err = %v, want io.EOF from the peer's close", err)
				}
				s.Close()
			}
			// Counters are exact: both directions moved at least the payloads.
			const moved = 2 * (5 + 300<<10 + 1)
			if d := a.BytesOut() - outA; d < moved {
				t.Fatalf("BytesOut grew by %d, want >= %d", d, moved)
			}
			if d := a.BytesIn() - inA; d < moved {
				t.Fatalf("BytesIn grew by %d, want >= %d", d, moved)
			}
		})
	}
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func TestRecvDeadline(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"tcp", "/tcp/"},
		{"quic", "/quic-v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newTestHost(t, ""), newTestHost(t, "")
			// b reads one frame, then never writes: it holds the stream until
			// the test ends (the reset from a's side ends its Recv).
			b.SetStreamHandler(echoProto, func(ns network.Stream) {
				s := NewStream(ns, 0)
				s.Recv(1 << 10)
				s.Recv(1 << 10)
				s.Reset()
			})
			ctx := testCtx(t, 10*time.Second)
			if _, err := a.Connect(ctx, pickAddr(t, b, tc.addr)); err != nil {
				t.Fatal(err)
			}
			ns, err := a.NewStream(ctx, b.ID(), echoProto)
			if err != nil {
				t.Fatal(err)
			}
			const timeout = 200 * time.Millisecond
			s := NewStream(ns, timeout)
			defer s.Reset()
			if err := s.Send([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = s.Recv(1 << 10)
			took := time.Since(start)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("err = %v (%T), want a timeout", err, err)
			}
			if took < timeout*3/4 || took > timeout+2*time.Second {
				t.Fatalf("Recv returned after %v, want about %v", took, timeout)
			}
		})
	}
}

func TestConnectBadInputs(t *testing.T) {
	a, b := newTestHost(t, ""), newTestHost(t, "")
	ctx := testCtx(t, 10*time.Second)
	noID := strings.Split(pickAddr(t, b, "/tcp/"), "/p2p/")[0]
	cases := []struct {
		name, addr string
		want       error // nil: any error
	}{
		{"garbage", "garbage", nil},
		{"empty", "", nil},
		{"no /p2p", noID, ErrNoPeerID},
		{"bad peer id", noID + "/p2p/notapeerid", nil},
		{"self", pickAddr(t, a, "/tcp/"), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := a.Connect(ctx, c.addr)
			if err == nil {
				t.Fatalf("Connect(%q) succeeded", c.addr)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			t.Log(err)
		})
	}
}

func TestJoinAddrs(t *testing.T) {
	h := newTestHost(t, "")
	addrs := h.JoinAddrs()
	if len(addrs) != 2 {
		t.Fatalf("JoinAddrs = %v, want a TCP and a QUIC address", addrs)
	}
	for _, a := range addrs {
		if !strings.HasSuffix(a, "/p2p/"+h.ID().String()) {
			t.Fatalf("%s does not end in /p2p/<id>", a)
		}
		if _, err := ma.NewMultiaddr(a); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(addrs[0], "/tcp/") {
		t.Fatalf("first address %s, want TCP first", addrs[0])
	}
}

func TestAddrRankOrder(t *testing.T) {
	// Listed in the order JoinAddrs must produce.
	want := []string{
		"/ip4/192.168.1.5/tcp/4001",
		"/ip4/192.168.1.5/udp/4001/quic-v1",
		"/ip6/2001:db8::1/tcp/4001",
		"/ip6/2001:db8::1/udp/4001/quic-v1",
		"/ip4/192.168.1.5/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
		"/ip4/127.0.0.1/tcp/4001",
		"/ip4/127.0.0.1/udp/4001/quic-v1",
		"/ip6/::1/tcp/4001",
	}
	for i := 1; i < len(want); i++ {
		a, b := ma.StringCast(want[i-1]), ma.StringCast(want[i])
		if addrRank(a) > addrRank(b) {
			t.Errorf("%s (rank %d) sorts after %s (rank %d)", a, addrRank(a), b, addrRank(b))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Fatalf("DefaultConfig without Dir: err = %v, want one naming Dir", err)
	}
	ok := DefaultConfig()
	ok.Dir = t.TempDir()
	if err := ok.Validate(); err != nil {
		t.Fatalf("DefaultConfig with Dir: %v", err)
	}
	cases := map[string]func(*Config){
		"ListenAddrs":     func(c *Config) { c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "nonsense"} },
		"MemoryLimit":     func(c *Config) { c.MemoryLimit = 1 << 20 },
		"ConnsPerIP":      func(c *Config) { c.ConnsPerIP = 0 },
		"ConnRatePerIP":   func(c *Config) { c.ConnRatePerIP = 0 },
		"ConnsHigh":       func(c *Config) { c.ConnsLow, c.ConnsHigh = 10, 5 },
		"ConnGrace":       func(c *Config) { c.ConnGrace = -time.Second },
		"MaxStreamWindow": func(c *Config) { c.MaxStreamWindow = 64 << 10 },
		"TCPNotSentLowat": func(c *Config) { c.TCPNotSentLowat = -1 },
		"PSK has 31":      func(c *Config) { c.PSK = make([]byte, 31) },
		"all QUIC":        func(c *Config) { c.PSK = make([]byte, 32); c.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"} },
	}
	big := ok
	big.MaxStreamWindow = maxStreamWindow + 1
	if err := big.Validate(); err == nil || !strings.Contains(err.Error(), "MaxStreamWindow") {
		t.Errorf("MaxStreamWindow above 16 MiB: err = %v, want one naming the field", err)
	}
	for field, mutate := range cases {
		c := ok
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v, want one naming the field", field, err)
		}
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted an invalid config", field)
		}
	}
}

func TestNewKeepsIdentityAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.ListenAddrs = loopbackAddrs[:1]
	h1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id := h1.ID()
	h1.Close()
	h2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if h2.ID() != id {
		t.Fatalf("restart changed the peer ID from %s to %s", id, h2.ID())
	}
}

func TestMeasureThroughput(t *testing.T) {
	a, b := newTestHost(t, ""), newTestHost(t, "")
	ctx := testCtx(t, 20*time.Second)
	if _, err := a.Connect(ctx, pickAddr(t, b, "/tcp/")); err != nil {
		t.Fatal(err)
	}
	bps, err := MeasureThroughput(ctx, a, b, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	if bps <= 0 {
		t.Fatalf("rate %v", bps)
	}
	t.Logf("TCP: %.0f MiB/s", bps/(1<<20))
	if len(b.Mux().Protocols()) != len(removeThroughput(b.Mux().Protocols())) {
		t.Fatal("temporary protocol left registered")
	}
	if _, err := MeasureThroughput(ctx, a, b, 0); err == nil {
		t.Fatal("n = 0 accepted")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := MeasureThroughput(cancelled, a, b, 1<<20); err == nil {
		t.Fatal("cancelled context accepted")
	}
}

func removeThroughput(ps []protocol.ID) []protocol.ID {
	var out []protocol.ID
	for _, p := range ps {
		if !strings.HasPrefix(string(p), throughputProto) {
			out = append(out, p)
		}
	}
	return out
}

// Yamux grows a stream's window from 256 KiB to MaxStreamWindow (at most
// 16 MiB) by reserving memory at priority 128 on a span of the connection
// scope. libp2p's default limits (32 MiB per connection) grant 16 MiB to one
// stream per connection; ours must grant full windows to several, or
// all-reduce streams crawl at 256 KiB per round trip.
func TestResourceManagerLetsWindowsGrow(t *testing.T) {
	big := DefaultConfig()
	big.MaxStreamWindow = maxStreamWindow
	unlimited := DefaultConfig()
	unlimited.MemoryLimit = 0
	for name, cfg := range map[string]Config{"default": DefaultConfig(), "unlimited": unlimited, "16MiB windows": big} {
		t.Run(name, func(t *testing.T) {
			rm, err := newResourceManager(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer rm.Close()
			conn, err := rm.OpenConnection(network.DirInbound, true, ma.StringCast("/ip4/10.0.0.1/tcp/4001"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Done()
			if err := conn.SetPeer(newTestHost(t, "").ID()); err != nil {
				t.Fatal(err)
			}
			const streams = 8
			for i := range streams {
				span, err := conn.BeginSpan()
				if err != nil {
					t.Fatal(err)
				}
				defer span.Done()
				if err := span.ReserveMemory(minStreamWindow, 255); err != nil {
					t.Fatalf("stream %d: initial window: %v", i, err)
				}
				if err := span.ReserveMemory(cfg.MaxStreamWindow-minStreamWindow, 128); err != nil {
					t.Fatalf("stream %d: growing the window to %d: %v", i, cfg.MaxStreamWindow, err)
				}
			}
		})
	}
}

// One peer cannot take more than its own limits, far below the host's:
// past them it is refused, while another peer still gets in.
func TestResourceManagerCapsOnePeer(t *testing.T) {
	cfg := DefaultConfig()
	rm, err := newResourceManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	hog, other := newTestHost(t, "").ID(), newTestHost(t, "").ID()
	openConn := func(p peer.ID, i int) (network.ConnManagementScope, error) {
		c, err := rm.OpenConnection(network.DirInbound, true, ma.StringCast(fmt.Sprintf("/ip4/10.0.%d.%d/tcp/4001", i/250, i%250+1)))
		if err != nil {
			return nil, err
		}
		if err := c.SetPeer(p); err != nil {
			c.Done()
			return nil, err
		}
		t.Cleanup(c.Done)
		return c, nil
	}

	t.Run("streams", func(t *testing.T) {
		for dir, limit := range map[network.Direction]int{network.DirInbound: peerStreamsInbound, network.DirOutbound: peerStreamsOutbound} {
			n := 0
			for range 4 * limit {
				s, err := rm.OpenStream(hog, dir)
				if err != nil {
					break
				}
				t.Cleanup(s.Done)
				n++
			}
			if n != limit {
				t.Errorf("%v: one peer opened %d streams, want its limit %d", dir, n, limit)
			}
			s, err := rm.OpenStream(other, dir)
			if err != nil {
				t.Fatalf("%v: another peer refused while one is at its limit: %v", dir, err)
			}
			s.Done()
		}
	})
	t.Run("conns", func(t *testing.T) {
		n := 0
		for i := range 4 * peerConns {
			if _, err := openConn(hog, i); err != nil {
				break
			}
			n++
		}
		if n != peerConnsInbound {
			t.Errorf("one peer opened %d inbound connections, want its limit %d", n, peerConnsInbound)
		}
		if _, err := openConn(other, 900); err != nil {
			t.Fatalf("another peer refused: %v", err)
		}
	})
	t.Run("memory", func(t *testing.T) {
		limit := cfg.peerMemory()
		if limit*16 > cfg.MemoryLimit {
			t.Fatalf("a peer may take %d of the host's %d bytes, want at most 1/16", limit, cfg.MemoryLimit)
		}
		hog, other := newTestHost(t, "").ID(), newTestHost(t, "").ID() // with no connections yet
		c, err := openConn(hog, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		for got < 4*limit {
			if c.ReserveMemory(1<<20, network.ReservationPriorityAlways) != nil {
				break
			}
			got += 1 << 20
		}
		if got != limit {
			t.Errorf("one peer reserved %d bytes, want its limit %d", got, limit)
		}
		c2, err := openConn(other, 1001)
		if err != nil {
			t.Fatal(err)
		}
		if err := c2.ReserveMemory(1<<20, network.ReservationPriorityAlways); err != nil {
			t.Fatalf("another peer refused memory: %v", err)
		}
	})
}

func TestPreferTCP(t *testing.T) {
	a, b := newTestHost(t, ""), newTestHost(t, "")
	ctx := testCtx(t, 10*time.Second)
	// Both addresses known: the default config ends up on TCP, where
	// libp2p's own ranking would pick QUIC.
	if err := a.Host.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	for _, c := range a.Network().ConnsToPeer(b.ID()) {
		if !strings.Contains(c.RemoteMultiaddr().String(), "/tcp/") {
			t.Fatalf("connected over %s, want TCP", c.RemoteMultiaddr())
		}
	}

	// A dead TCP address falls back to QUIC without waiting for timeouts.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)
	l.Close()
	c := newTestHost(t, "")
	start := time.Now()
	err = a.Host.Connect(ctx, peer.AddrInfo{ID: c.ID(), Addrs: []ma.Multiaddr{
		ma.StringCast(dead),
		ma.StringCast(strings.Split(pickAddr(t, c, "/quic-v1"), "/p2p/")[0]),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("fallback to QUIC took %v", took)
	}
	if got := a.Network().ConnsToPeer(c.ID())[0].RemoteMultiaddr().String(); !strings.Contains(got, "/quic-v1") {
		t.Fatalf("connected over %s, want QUIC", got)
	}
}

func TestTCPFirstRanker(t *testing.T) {
	addrs := []ma.Multiaddr{
		ma.StringCast("/ip4/192.168.1.5/udp/4001/quic-v1"),
		ma.StringCast("/ip4/192.168.1.5/tcp/4001"),
		ma.StringCast("/ip4/8.8.8.8/udp/4001/quic-v1"),
		ma.StringCast("/ip4/8.8.8.8/tcp/4001"),
	}
	var tcpMax, otherMin time.Duration = 0, time.Hour
	for _, d := range tcpFirstRanker(250 * time.Millisecond)(addrs) {
		if isPlainTCP(d.Addr) {
			tcpMax = max(tcpMax, d.Delay)
		} else {
			otherMin = min(otherMin, d.Delay)
		}
	}
	if otherMin < tcpMax+250*time.Millisecond {
		t.Fatalf("QUIC dialled after %v, TCP by %v: want QUIC >= 250ms after TCP", otherMin, tcpMax)
	}
}
