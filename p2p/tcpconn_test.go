package p2p

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
)

// newTCPHost starts a host with cfg and a throwaway identity that listens
// on loopback TCP only, so every connection it makes or takes is TCP.
func newTCPHost(t *testing.T, cfg Config) *Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Identity = key
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// tcpConn connects a to b over TCP and returns a's connection and b's
// side of it.
func tcpConn(t *testing.T, a, b *Host) (network.Conn, network.Conn) {
	t.Helper()
	if _, err := a.Connect(testCtx(t, 10*time.Second), pickAddr(t, b, "/tcp/")); err != nil {
		t.Fatal(err)
	}
	ca := a.Network().ConnsToPeer(b.ID())
	if len(ca) != 1 {
		t.Fatalf("a has %d connections to b, want 1", len(ca))
	}
	var cb network.Conn
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, c := range b.Network().ConnsToPeer(a.ID()) {
			if c.RemoteMultiaddr().Equal(ca[0].LocalMultiaddr()) {
				cb = c
				return nil
			}
		}
		return fmt.Errorf("b has no connection from %s", ca[0].LocalMultiaddr())
	})
	return ca[0], cb
}

func tcpPort(t *testing.T, a ma.Multiaddr) string {
	t.Helper()
	p, err := a.ValueForProtocol(ma.P_TCP)
	if err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	return p
}

// Dials come from the listen port (SO_REUSEPORT): TCP hole punching needs
// it, and identify tells a node its public address only on such
// connections. Crossing dials that this joins into one connection are
// settled by simopen.go.
func TestTCPDialsFromListenPort(t *testing.T) {
	a, b := newTCPHost(t, DefaultConfig()), newTCPHost(t, DefaultConfig())
	conn, _ := tcpConn(t, a, b)
	local := tcpPort(t, conn.LocalMultiaddr())
	var listen []string
	for _, l := range a.Network().ListenAddresses() {
		if p, err := l.ValueForProtocol(ma.P_TCP); err == nil {
			listen = append(listen, p)
			if p == local {
				return
			}
		}
	}
	t.Fatalf("a dialed b from %s, not from a listen port %v", conn.LocalMultiaddr(), listen)
}
