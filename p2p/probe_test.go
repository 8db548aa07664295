package p2p

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A probe reaches a host that serves it and reports a rate; a probe
// beyond MaxProbeBytes is refused before anything is sent; a header
// asking the server to drain more than MaxProbeBytes gets the stream
// reset, not a 2^63-byte wait.
func TestProbe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := newTestHost(t, ""), newTestHost(t, "")
	ServeProbe(b)
	if err := a.Host.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	rate, err := Probe(ctx, a, b.ID(), 4<<20)
	if err != nil || rate <= 0 {
		t.Fatalf("probe: %v B/s, %v", rate, err)
	}
	if _, err := Probe(ctx, a, b.ID(), MaxProbeBytes+1); err == nil || !strings.Contains(err.Error(), "want 1..") {
		t.Fatalf("an oversized probe: %v, want refused", err)
	}
	s, err := a.NewStream(ctx, b.ID(), ProtoProbe)
	if err != nil {
		t.Fatal(err)
	}
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], 1<<62)
	s.Write(hdr[:])
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, network.ErrReset) {
		t.Fatalf("a huge probe header: read %v, want the stream reset", err)
	}
}
