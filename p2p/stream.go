package p2p

import (
	"bufio"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// streamBufSize is the bufio size on each side of a Stream. 64 KiB keeps a
// small frame in one write and lets large payloads bypass the buffer
// (bufio writes them straight through once the buffer is empty).
const streamBufSize = 64 << 10

// Stream sends and receives frames over a libp2p stream, arming a fresh
// deadline for every frame so a silent or stalled peer costs at most one
// timeout. A timeout therefore bounds a whole frame: size frames so that one
// fits in the timeout at the slowest bandwidth you accept.
//
// After any error from Send or Recv the stream is out of sync; the caller
// should Reset it. A Stream is not safe for concurrent Sends or concurrent
// Recvs, but one goroutine may Send while another Recvs.
type Stream struct {
	s       network.Stream
	timeout time.Duration
	r       *bufio.Reader
	w       *bufio.Writer
}

// NewStream wraps s. timeout <= 0 disables deadlines (tests only: a peer
// that stops talking then blocks the caller forever).
func NewStream(s network.Stream, timeout time.Duration) *Stream {
	return &Stream{
		s:       s,
		timeout: timeout,
		r:       bufio.NewReaderSize(s, streamBufSize),
		w:       bufio.NewWriterSize(s, streamBufSize),
	}
}

// Send writes one frame and flushes it, under a write deadline of now+timeout.
func (s *Stream) Send(payload []byte) error {
	if s.timeout > 0 {
		if err := s.s.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
			return err
		}
	}
	if err := WriteFrame(s.w, payload); err != nil {
		return err
	}
	return s.w.Flush()
}

// Recv reads one frame of at most max bytes under a read deadline of
// now+timeout. See ReadFrame for the errors.
func (s *Stream) Recv(max int) ([]byte, error) {
	if s.timeout > 0 {
		if err := s.s.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
			return nil, err
		}
	}
	return ReadFrame(s.r, max)
}

// RecvInto is Recv reading into buf's storage when the frame fits (see
// ReadFrameInto): the result is only valid until buf is reused.
func (s *Stream) RecvInto(buf []byte, max int) ([]byte, error) {
	if s.timeout > 0 {
		if err := s.s.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
			return nil, err
		}
	}
	return ReadFrameInto(s.r, buf, max)
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
