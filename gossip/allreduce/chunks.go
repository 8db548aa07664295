package allreduce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/gossip"
)

// Chunks. A part travels as consecutive chunks of chunkValues values, each
// its own compression frame, so the three stages overlap: a sender's
// chunk c reaches the owner while it encodes chunk c+1, the owner
// averages chunk c as soon as every member's chunk c is in, and sends
// that chunk of the average back while later chunks are still arriving.
// Both ends derive the chunks from the part's bounds alone.
//
// An owner's average of a part, kept for repairs and digests, is its
// chunks one after the other as they went out, each as
//
//	uint32 length (little endian) | status byte resultOK | frame
//
// The length makes the concatenation unambiguous, so one digest covers
// the chunking too; the status byte and frame are the bytes sent, so a
// chunk goes out straight from where it is kept.

// chunkPrefix is the length field before each chunk of a kept average.
const chunkPrefix = 4

// chunkCount is the number of chunks of a part of n values (0 for none).
func chunkCount(n int) int { return (n + chunkValues - 1) / chunkValues }

// chunkBounds are the values [lo, hi) of chunk c of a part of n values,
// relative to the part.
func chunkBounds(n, c int) (lo, hi int) { return c * chunkValues, min(n, (c+1)*chunkValues) }

// maxChunked bounds the kept average of a part of n values whose chunks
// are at most frame(count) bytes each: what its buffer is sized for.
func maxChunked(n int, frame func(count int) int) int {
	total := 0
	for c := range chunkCount(n) {
		lo, hi := chunkBounds(n, c)
		total += chunkPrefix + 1 + frame(hi-lo)
	}
	return total
}

// errChunks: kept or repaired average bytes out of shape.
var errChunks = errors.New("malformed chunked part")

// nextChunk splits the first chunk off b: its status byte and frame, and
// the rest.
func nextChunk(b []byte) (frame, rest []byte, err error) {
	if len(b) < chunkPrefix {
		return nil, nil, fmt.Errorf("%w: %d bytes left, want a length", errChunks, len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-chunkPrefix) || n == 0 {
		return nil, nil, fmt.Errorf("%w: chunk of %d bytes, %d left", errChunks, n, len(b)-chunkPrefix)
	}
	return b[chunkPrefix : chunkPrefix+n], b[chunkPrefix+n:], nil
}

// decodeChunks decodes a kept average (see above) into dst, the part's
// values: every chunk must be there, in order, with the status resultOK
// and the chunk's count of values, and nothing after.
func decodeChunks(dst []float32, b []byte) error {
	for c := range chunkCount(len(dst)) {
		lo, hi := chunkBounds(len(dst), c)
		f, rest, err := nextChunk(b)
		if err != nil {
			return fmt.Errorf("chunk %d: %w", c, err)
		}
		if err := decodeResult(dst[lo:hi], f); err != nil {
			return fmt.Errorf("chunk %d: %w", c, err)
		}
		b = rest
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d bytes after the last chunk", errChunks, len(b))
	}
	return nil
}

// keepChunk appends a chunk received as frame (status byte and
// compression frame) to kept: in place when frame was read into kept's
// spare capacity just past room for the length (recvChunk), else by copy.
func keepChunk(kept, frame []byte) []byte {
	off := len(kept)
	if cap(kept)-off >= chunkPrefix+len(frame) && len(frame) > 0 &&
		&kept[:off+chunkPrefix+1][off+chunkPrefix] == &frame[0] {
		kept = kept[:off+chunkPrefix+len(frame)]
	} else {
		kept = append(kept, make([]byte, chunkPrefix)...)
		kept = append(kept, frame...)
	}
	binary.LittleEndian.PutUint32(kept[off:], uint32(len(frame)))
	return kept
}

// intoReceiver is a stream that can read a frame into a given buffer
// (p2p.Stream): the bytes then land where they are kept, with no copy.
type intoReceiver interface {
	RecvInto(buf []byte, max int) ([]byte, error)
}

// recvChunk receives a frame of at most max bytes, into kept's spare
// capacity past room for a length when the stream can and it fits.
func recvChunk(s gossip.Stream, kept []byte, max int) ([]byte, error) {
	if ri, ok := s.(intoReceiver); ok {
		off := len(kept) + chunkPrefix
		if cap(kept) >= off {
			return ri.RecvInto(kept[off:off:cap(kept)], max)
		}
	}
	return s.Recv(max)
}

// recvInto receives a frame of at most max bytes into buf's storage when
// the stream can (a reused buffer), else into a new slice.
func recvInto(s gossip.Stream, buf []byte, max int) ([]byte, error) {
	if ri, ok := s.(intoReceiver); ok {
		return ri.RecvInto(buf[:0], max)
	}
	return s.Recv(max)
}

// appendChunk encodes values with c as one chunk of a kept average: the
// length, resultOK and the frame, appended to kept. It returns kept and
// the chunk as sent (status byte and frame).
func (a *Averager) appendChunk(kept []byte, c compression.Codec, values []float32) ([]byte, []byte, error) {
	off := len(kept)
	kept = append(kept, 0, 0, 0, 0, resultOK)
	kept, err := a.encodeAppend(kept, c, values)
	if err != nil {
		return kept[:off], nil, err
	}
	binary.LittleEndian.PutUint32(kept[off:], uint32(len(kept)-off-chunkPrefix))
	return kept, kept[off+chunkPrefix:], nil
}

// bytePool holds chunk-sized buffers for encoding and receiving.
var bytePool sync.Pool

func getBytes(n int) *[]byte {
	if p, ok := bytePool.Get().(*[]byte); ok && cap(*p) >= n {
		*p = (*p)[:0]
		return p
	}
	b := make([]byte, 0, n)
	return &b
}

func putBytes(p *[]byte) { bytePool.Put(p) }
