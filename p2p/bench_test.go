package p2p

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

const sinkProto = protocol.ID("/swarmtrain/test/sink/1")

// serveSink receives frames until the peer half-closes, then acks with one
// empty frame: the shape of a bulk all-reduce transfer.
func serveSink(h *Host, maxFrame int) {
	h.SetStreamHandler(sinkProto, func(ns network.Stream) {
		s := NewStream(ns, 10*time.Second)
		buf := make([]byte, maxFrame)
		for {
			_, err := s.RecvInto(buf, maxFrame)
			if err == io.EOF {
				break
			}
			if err != nil {
				s.Reset()
				return
			}
		}
		if err := s.Send(nil); err != nil {
			s.Reset()
			return
		}
		s.Close()
	})
}

// BenchmarkStreamThroughput sends 16 MiB per iteration over one new stream
// between two loopback hosts, in 1 MiB frames through Stream, and waits for
// the receiver's ack. On loopback it measures CPU cost (encryption, muxing,
// copies), not a network.
//
//	go test -run x -bench StreamThroughput -benchtime 20x ./p2p/
func BenchmarkStreamThroughput(b *testing.B) {
	const total, frame = 16 << 20, 1 << 20
	key, err := NewSwarmKey()
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, addr string
		psk        []byte
	}{
		{"tcp", "/tcp/", nil},
		{"tcp+key", "/tcp/", key}, // the private network's cipher under TLS
		{"quic", "/quic-v1", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a, c := newKeyedHost(b, tc.psk), newKeyedHost(b, tc.psk)
			serveSink(c, frame)
			ctx := testCtx(b, time.Hour)
			addr := ""
			for _, s := range c.JoinAddrs() {
				if addr == "" && strings.Contains(s, tc.addr) {
					addr = s
				}
			}
			if _, err := a.Connect(ctx, addr); err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, frame)
			b.SetBytes(total)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				ns, err := a.NewStream(ctx, c.ID(), sinkProto)
				if err != nil {
					b.Fatal(err)
				}
				s := NewStream(ns, 10*time.Second)
				for sent := 0; sent < total; sent += frame {
					if err := s.Send(payload); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.CloseWrite(); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Recv(0); err != nil {
					b.Fatal(fmt.Errorf("ack: %w", err))
				}
				s.Close()
			}
			b.ReportMetric(float64(b.N)*total/(1<<20)/time.Since(start).Seconds(), "MiB/s")
		})
	}
}
