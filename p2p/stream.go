package p2p

import (
	"bufio"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// streamBufSize is the bufio size on each side of a Stream. 64 KiB keeps a
// small frame in one write and lets large payloads bypass the buffer
// (bufio writes them straight through once the buffer is empty).
const streamBufSize = 64 << 10

// Stream sends and receives frames over a libp2p stream, arming a fresh
// deadline for every frame so a silent or stalled peer costs a bounded
// time. A frame gets timeout plus its size at the slowest rate the stream
// accepts (SetMinRate): a small frame is bounded by the timeout alone, a
// large one is not cut off on a slow but working link, and a peer that
// trickles bytes still cannot hold the stream longer than that.
//
// After any error from Send or Recv the stream is out of sync; the caller
// should Reset it. A Stream is not safe for concurrent Sends or concurrent
// Recvs, but one goroutine may Send while another Recvs.
type Stream struct {
	s       network.Stream
	timeout atomic.Int64 // time.Duration; SetTimeout may race with the other direction
	minRate float64      // bytes/s; 0: the timeout bounds every frame whatever its size
	r       *bufio.Reader
	w       *bufio.Writer
}

// NewStream wraps s. timeout <= 0 disables deadlines (tests only: a peer
// that stops talking then blocks the caller forever).
func NewStream(s network.Stream, timeout time.Duration) *Stream {
	st := &Stream{
		s: s,
		r: bufio.NewReaderSize(s, streamBufSize),
		w: bufio.NewWriterSize(s, streamBufSize),
	}
	st.timeout.Store(int64(timeout))
	return st
}

// SetMinRate gives every frame, beyond the timeout, the time its payload
// takes at bytesPerSec: the slowest link the caller is willing to wait
// for. 0 (the default) bounds each frame by the timeout alone.
func (s *Stream) SetMinRate(bytesPerSec float64) { s.minRate = max(bytesPerSec, 0) }

// SetTimeout replaces the per-frame timeout for the frames that follow:
// a reply that is expected only after other work (a round's result) gets
// the time that work may take.
func (s *Stream) SetTimeout(d time.Duration) { s.timeout.Store(int64(d)) }

// frameDeadline is when a frame of n payload bytes begun now must be done.
func (s *Stream) frameDeadline(n int) time.Time {
	d := time.Duration(s.timeout.Load())
	if s.minRate > 0 {
		d += time.Duration(float64(n) / s.minRate * float64(time.Second))
	}
	return time.Now().Add(d)
}

// Send writes one frame and flushes it, within the frame's deadline.
func (s *Stream) Send(payload []byte) error {
	if s.timeout.Load() > 0 {
		if err := s.s.SetWriteDeadline(s.frameDeadline(len(payload))); err != nil {
			return err
		}
	}
	if err := WriteFrame(s.w, payload); err != nil {
		return err
	}
	return s.w.Flush()
}

// Recv reads one frame of at most max bytes: the length prefix within the
// timeout, then the payload within the deadline its length sets. See
// ReadFrame for the errors.
func (s *Stream) Recv(max int) ([]byte, error) { return s.RecvInto(nil, max) }

// RecvInto is Recv reading into buf's storage when the frame fits (see
// ReadFrameInto): the result is only valid until buf is reused.
func (s *Stream) RecvInto(buf []byte, max int) ([]byte, error) {
	timeout := time.Duration(s.timeout.Load())
	if timeout <= 0 {
		return ReadFrameInto(s.r, buf, max)
	}
	if err := s.s.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	var payloadDeadline func(int) error
	if s.minRate > 0 {
		payloadDeadline = func(n int) error { return s.s.SetReadDeadline(s.frameDeadline(n)) }
	}
	return readFrame(s.r, buf, max, payloadDeadline)
}

// CloseWrite flushes and half-closes: the peer's next Recv sees io.EOF, while
// we can still Recv its reply (e.g. an ack).
func (s *Stream) CloseWrite() error {
	if err := s.w.Flush(); err != nil {
		s.s.Reset()
		return err
	}
	return s.s.CloseWrite()
}

// Close flushes and closes both directions gracefully; if the flush fails
// it resets instead.
func (s *Stream) Close() error {
	if err := s.w.Flush(); err != nil {
		s.s.Reset()
		return err
	}
	return s.s.Close()
}

// Reset aborts the stream in both directions, discarding buffered data. Use
// it after any error so neither side waits for a timeout.
func (s *Stream) Reset() error { return s.s.Reset() }

// RemotePeer is the authenticated peer on the other end.
func (s *Stream) RemotePeer() peer.ID { return s.s.Conn().RemotePeer() }

// Raw returns the underlying libp2p stream (for its protocol, connection or
// scope). Do not read or write it directly: bytes may sit in our buffers.
func (s *Stream) Raw() network.Stream { return s.s }
