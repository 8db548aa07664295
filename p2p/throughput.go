package p2p

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// throughputProto prefixes the temporary protocol MeasureThroughput
// registers; a random suffix lets several measurements run at once.
const throughputProto = "/swarmtrain/throughput/1/"

// throughputChunk is the read and write size on both ends: large enough
// that per-call costs vanish, small enough to stay in cache.
const throughputChunk = 1 << 20

// MeasureThroughput sends n bytes over one new stream from `from` to `to` and
// returns the rate in bytes per second, timed from opening the stream until
// `to` acknowledges the last byte (so it includes one stream setup and one
// round trip: use n of several MiB). It uses the connection `from` already
// has to `to`, dialing to.Addrs() if there is none, so it measures the
// transport other protocols between the two hosts use too. Both hosts must
// live in this process: a temporary handler on `to` drains the bytes.
// ctx bounds the whole measurement.
func MeasureThroughput(ctx context.Context, from, to *Host, n int) (float64, error) {
	if n <= 0 {
		return 0, fmt.Errorf("p2p: MeasureThroughput n %d must be > 0", n)
	}
	var nonce [8]byte
	rand.Read(nonce[:])
	proto := protocol.ID(throughputProto + hex.EncodeToString(nonce[:]))

	done := make(chan error, 1)
	to.SetStreamHandler(proto, func(s network.Stream) {
		if s.Conn().RemotePeer() != from.ID() {
			s.Reset()
			return
		}
		err := drain(ctx, s, n)
		select {
		case done <- err:
		default: // a second stream on a random protocol: not ours to report
		}
	})
	defer to.RemoveStreamHandler(proto)

	if from.Network().Connectedness(to.ID()) != network.Connected {
		if err := from.Host.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
			return 0, fmt.Errorf("p2p: throughput: connect: %w", err)
		}
	}
	start := time.Now()
	s, err := from.NewStream(ctx, to.ID(), proto)
	if err != nil {
		return 0, fmt.Errorf("p2p: throughput: open stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if err := send(s, n); err != nil {
		s.Reset()
		return 0, fmt.Errorf("p2p: throughput: send: %w", ctxErr(ctx, err))
	}
	elapsed := time.Since(start)
	s.Close()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("p2p: throughput: receiver: %w", ctxErr(ctx, err))
	}
	return float64(n) / elapsed.Seconds(), nil
}

// send writes n bytes, half-closes, and waits for the one-byte ack.
func send(s network.Stream, n int) error {
	buf := make([]byte, min(n, throughputChunk))
	for left := n; left > 0; {
		m, err := s.Write(buf[:min(left, len(buf))])
		if err != nil {
			return err
		}
		left -= m
	}
	if err := s.CloseWrite(); err != nil {
		return err
	}
	var ack [1]byte
	if _, err := io.ReadFull(s, ack[:]); err != nil {
		return fmt.Errorf("waiting for ack: %w", err)
	}
	return nil
}

// drain discards exactly n bytes, then acks. Its own buffer (rather than
// io.Discard's 8 KiB one) keeps per-read overhead out of the figure.
func drain(ctx context.Context, s network.Stream, n int) error {
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	buf := make([]byte, min(n, throughputChunk))
	for left := n; left > 0; {
		m, err := s.Read(buf[:min(left, len(buf))])
		left -= m
		if err != nil && left > 0 {
			s.Reset()
			return fmt.Errorf("%d of %d bytes missing: %w", left, n, err)
		}
	}
	if _, err := s.Write([]byte{1}); err != nil {
		s.Reset()
		return err
	}
	return s.Close()
}

// ctxErr prefers the context's error: a stream reset by the AfterFuncs above
// says "stream reset", which hides that the caller cancelled.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
