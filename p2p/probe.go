package p2p

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ProtoProbe is the throughput probe `swarmtrain doctor` runs against a
// node: the prober sends a length, then that many bytes; the node
// discards them and acks. Nodes serve it to anyone who can connect (it
// needs no admission: doctor is not on the run), so it is bounded: at
// most MaxProbeBytes per probe, one probe per peer and maxProbes in all
// at a time, the rest reset.
const ProtoProbe = "/swarmtrain/probe/1"

const (
	// MaxProbeBytes caps one probe: enough to time a link, not enough to
	// keep a node's uplink busy for long.
	MaxProbeBytes = 64 << 20
	maxProbes     = 4
	// probeTimeout bounds how long a probe may hold its slot.
	probeTimeout = 2 * time.Minute
)

// ServeProbe registers the throughput probe on h.
func ServeProbe(h *Host) {
	var mu sync.Mutex
	busy := map[peer.ID]bool{}
	h.SetStreamHandler(ProtoProbe, func(s network.Stream) {
		p := s.Conn().RemotePeer()
		mu.Lock()
		if busy[p] || len(busy) >= maxProbes {
			mu.Unlock()
			s.Reset()
			return
		}
		busy[p] = true
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(busy, p)
			mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		var hdr [8]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			s.Reset()
			return
		}
		n := binary.BigEndian.Uint64(hdr[:])
		if n == 0 || n > MaxProbeBytes {
			s.Reset()
			return
		}
		drain(ctx, s, int(n))
	})
}

// Probe sends n bytes to p's probe (ServeProbe) over the connection h
// has to it, dialing if there is none, and returns the rate in bytes per
// second from opening the stream to p's ack (one stream setup and one
// round trip included: use several MiB).
func Probe(ctx context.Context, h *Host, p peer.ID, n int) (float64, error) {
	if n <= 0 || n > MaxProbeBytes {
		return 0, fmt.Errorf("p2p: probe of %d bytes, want 1..%d", n, MaxProbeBytes)
	}
	start := time.Now()
	s, err := h.NewStream(ctx, p, ProtoProbe)
	if err != nil {
		return 0, fmt.Errorf("p2p: probe: open stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := s.Write(hdr[:]); err != nil {
		s.Reset()
		return 0, fmt.Errorf("p2p: probe: %w", ctxErr(ctx, err))
	}
	if err := send(s, n); err != nil {
		s.Reset()
		return 0, fmt.Errorf("p2p: probe: %w (does the peer serve %s?)", ctxErr(ctx, err), ProtoProbe)
	}
	s.Close()
	return float64(n) / time.Since(start).Seconds(), nil
}
