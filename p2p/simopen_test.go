package p2p

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tlssec "github.com/libp2p/go-libp2p/p2p/security/tls"
)

func TestSettle(t *testing.T) {
	d := func(n uint64) preamble { return preamble{Dialer: true, Nonce: n} }
	l := func(n uint64) preamble { return preamble{Nonce: n} }
	for _, tc := range []struct {
		name          string
		local, remote preamble
		server, sim   bool
		err           string
	}{
		{"dialer meets listener", d(5), l(1), false, false, ""},
		{"listener meets dialer", l(5), d(1), true, false, ""},
		{"simultaneous, lower nonce serves", d(1), d(5), true, true, ""},
		{"simultaneous, higher nonce dials", d(5), d(1), false, true, ""},
		{"equal nonces", d(3), d(3), false, true, "equal role nonces"},
		{"two listeners", l(1), l(2), false, false, "nobody dialed"},
	} {
		server, sim, err := settle(tc.local, tc.remote)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || server != tc.server || sim != tc.sim {
			t.Errorf("%s: server %v sim %v err %v; want server %v sim %v", tc.name, server, sim, err, tc.server, tc.sim)
		}
	}
}

func TestPreambleDecode(t *testing.T) {
	p := preamble{Dialer: true, Nonce: 0x00abcdef01234567}
	got, err := decodePreamble(p.encode())
	if err != nil || got != p {
		t.Fatalf("round trip: %+v %v, want %+v", got, err, p)
	}
	bad := p.encode()
	bad[8] = 'X'
	for name, b := range map[string][]byte{
		"short": p.encode()[:5],
		"magic": append([]byte("GET / HT"), p.encode()[8:]...),
		"role":  bad,
	} {
		if _, err := decodePreamble(b); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func FuzzPreamble(f *testing.F) {
	f.Add(preamble{Dialer: true, Nonce: 7}.encode())
	f.Add([]byte("swtrole\x01Z1234567"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePreamble(b)
		if err == nil && !bytes.Equal(p.encode(), b) {
			t.Fatalf("%q decodes to %+v, which encodes to %q", b, p, p.encode())
		}
	})
}

// endpoint is one side of a handshake test.
type endpoint struct {
	rs *roleSecurity
	id peer.ID
}

func newEndpoint(t *testing.T, noiseSec bool, nonce uint64, sims *atomic.Int64) endpoint {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	var st sec.SecureTransport
	if noiseSec {
		st, err = noise.New(NoiseID, key, nil)
	} else {
		st, err = tlssec.New(TLSID, key, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], nonce)
	return endpoint{rs: &roleSecurity{SecureTransport: st, nonces: bytes.NewReader(n[1:]), simOpen: sims}, id: id}
}

type result struct {
	c   sec.SecureConn
	err error
}

// handshake secures both ends of a connection at once, each as dialer
// (outbound) or listener (inbound), as the upgrader would.
func handshake(a, b endpoint, ca, cb net.Conn, aDials, bDials bool) (ra, rb result) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	run := func(e endpoint, c net.Conn, dials bool, remote peer.ID, out chan<- result) {
		var r result
		if dials {
			r.c, r.err = e.rs.SecureOutbound(ctx, c, remote)
		} else {
			r.c, r.err = e.rs.SecureInbound(ctx, c, "")
		}
		if r.err != nil {
			c.Close() // as the upgrader does; unblocks the other end
		}
		out <- r
	}
	cha, chb := make(chan result, 1), make(chan result, 1)
	go run(a, ca, aDials, b.id, cha)
	go run(b, cb, bDials, a.id, chb)
	return <-cha, <-chb
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Both ends calling SecureOutbound on one connection is what the upgrader
// does after a TCP simultaneous open: with the preamble the lower nonce
// serves, both handshakes succeed, and yamux gets matching roles.
func TestSimultaneousOpenHandshake(t *testing.T) {
	for _, tc := range []struct {
		name  string
		noise bool
		tcp   bool
	}{{"tls/pipe", false, false}, {"noise/pipe", true, false}, {"tls/tcp", false, true}, {"noise/tcp", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			var sims atomic.Int64
			a := newEndpoint(t, tc.noise, 9, &sims)
			b := newEndpoint(t, tc.noise, 2, &sims)
			var ca, cb net.Conn
			if tc.tcp {
				ca, cb = tcpPair(t)
			} else {
				ca, cb = net.Pipe()
			}
			ra, rb := handshake(a, b, ca, cb, true, true)
			if ra.err != nil || rb.err != nil {
				t.Fatalf("a: %v; b: %v", ra.err, rb.err)
			}
			if ra.c.RemotePeer() != b.id || rb.c.RemotePeer() != a.id {
				t.Errorf("peers %s, %s; want %s, %s", ra.c.RemotePeer(), rb.c.RemotePeer(), b.id, a.id)
			}
			if ra.c.(*settledConn).server || !rb.c.(*settledConn).server {
				t.Errorf("a (nonce 9) server %v, b (nonce 2) server %v; want b to serve", ra.c.(*settledConn).server, rb.c.(*settledConn).server)
			}
			if n := sims.Load(); n != 2 {
				t.Errorf("simultaneous opens counted %d, want 2 (one per end)", n)
			}
			checkMuxedStreams(t, ra.c, rb.c)
		})
	}
}

// checkMuxedStreams runs yamux over both ends through settledMuxer, each
// told it is the client (as the upgrader does after a simultaneous open),
// and opens a stream from each side.
func checkMuxedStreams(t *testing.T, a, b net.Conn) {
	t.Helper()
	m := settledMuxer{yamux.DefaultTransport}
	ma, err := m.NewConn(a, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := m.NewConn(b, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	for _, pair := range [][2]network.MuxedConn{{ma, mb}, {mb, ma}} {
		errc := make(chan error, 1)
		go func() {
			s, err := pair[1].AcceptStream()
			if err != nil {
				errc <- err
				return
			}
			_, err = io.Copy(s, s)
			s.Close()
			errc <- err
		}()
		s, err := pair[0].OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("hello"))
		s.CloseWrite()
		got, err := io.ReadAll(s)
		if err != nil || string(got) != "hello" {
			t.Fatalf("echo %q %v", got, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// Ordinary dials and libp2p's own hole-punch roles (one end told to
// SecureInbound on a connection it dialed) go through unchanged and count
// no simultaneous open.
func TestDialerListenerHandshake(t *testing.T) {
	var sims atomic.Int64
	a := newEndpoint(t, false, 1, &sims)
	b := newEndpoint(t, false, 1, &sims) // equal nonces matter only to two dialers
	ca, cb := net.Pipe()
	ra, rb := handshake(a, b, ca, cb, true, false)
	if ra.err != nil || rb.err != nil {
		t.Fatalf("a: %v; b: %v", ra.err, rb.err)
	}
	if sims.Load() != 0 {
		t.Errorf("counted %d simultaneous opens on an ordinary dial", sims.Load())
	}
	checkMuxedStreams(t, ra.c, rb.c)
}

func TestHandshakeRejects(t *testing.T) {
	t.Run("equal nonces", func(t *testing.T) {
		var sims atomic.Int64
		a, b := newEndpoint(t, false, 4, &sims), newEndpoint(t, false, 4, &sims)
		ca, cb := net.Pipe()
		ra, rb := handshake(a, b, ca, cb, true, true)
		for _, r := range []result{ra, rb} {
			if r.err == nil || !strings.Contains(r.err.Error(), "equal role nonces") {
				t.Errorf("err %v, want equal nonces", r.err)
			}
		}
	})
	t.Run("garbage", func(t *testing.T) {
		var sims atomic.Int64
		a := newEndpoint(t, false, 4, &sims)
		ca, cb := net.Pipe()
		go io.Copy(io.Discard, cb)
		go cb.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		_, err := a.rs.SecureInbound(context.Background(), ca, "")
		if err == nil || !strings.Contains(err.Error(), "not a swarmtrain peer") {
			t.Errorf("err %v, want a bad-magic error", err)
		}
	})
	t.Run("silent peer", func(t *testing.T) {
		var sims atomic.Int64
		a := newEndpoint(t, false, 4, &sims)
		ca, cb := net.Pipe()
		go io.Copy(io.Discard, cb)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := a.rs.SecureOutbound(ctx, ca, "x"); err == nil {
			t.Error("no error from a peer that never sends its preamble")
		}
	})
}
