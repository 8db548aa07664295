package p2p

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A frame is a uvarint payload length followed by the payload. The reader
// treats the length as hostile: it is capped before any allocation, and a
// frame that claims more than it delivers costs the reader at most
// max(preallocLimit, bytes actually received) of memory.

// ErrFrameTooLarge is returned by ReadFrame when the length prefix exceeds max.
// The payload is left unread, so the stream is out of sync: reset it.
var ErrFrameTooLarge = errors.New("p2p: frame exceeds size limit")

// ErrBadVarint is returned by ReadFrame for a length prefix that is longer
// than 10 bytes, overflows 64 bits, or is not minimally encoded (a trailing
// 0x00 continuation byte). Rejecting non-minimal forms keeps one encoding per
// length, so a frame's bytes are canonical.
var ErrBadVarint = errors.New("p2p: malformed frame length")

// preallocLimit is the largest payload allocated in full from the length
// prefix alone. Larger payloads grow with the bytes that actually arrive, so a
// peer that announces 1 GiB and sends nothing costs us only this much.
const preallocLimit = 1 << 20

// WriteFrame writes len(payload) as a uvarint, then payload. With an
// unbuffered w this is two writes; wrap w in a bufio.Writer (as Stream does)
// to send small frames in one packet.
func WriteFrame(w io.Writer, payload []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(payload)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	if len(payload) == 0 {
		return nil
	}
	_, err := w.Write(payload)
	return err
}

// ReadFrame reads one frame of at most max payload bytes. It returns
// ErrFrameTooLarge without allocating if the prefix says more, ErrBadVarint
// for a malformed prefix, io.EOF if r ends cleanly before a frame starts, and
// io.ErrUnexpectedEOF if it ends inside one. An empty payload is returned as
// a non-nil empty slice. On any error the caller should drop (Reset) the stream.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	return ReadFrameInto(r, nil, max)
}

// ReadFrameInto is ReadFrame reading into buf's storage when the payload fits
// in cap(buf) (the result then aliases buf), and into a new slice otherwise.
// Reusing one buffer per stream spares an allocation and a clear per frame.
func ReadFrameInto(r io.Reader, buf []byte, max int) ([]byte, error) {
	return readFrame(r, buf, max, nil)
}

// readFrame is ReadFrameInto calling started, when non-nil, with the
// payload's length once the prefix is read and checked, before the
// payload: Stream arms the payload's deadline there.
func readFrame(r io.Reader, buf []byte, max int, started func(n int) error) ([]byte, error) {
	if max < 0 {
		return nil, fmt.Errorf("p2p: ReadFrame max %d < 0", max)
	}
	n, err := readUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, max)
	}
	if started != nil {
		if err := started(int(n)); err != nil {
			return nil, err
		}
	}
	if buf != nil && int(n) <= cap(buf) {
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, noEOF(err)
		}
		return buf, nil
	}
	return readPayload(r, int(n))
}

// readUvarint reads a canonical uvarint one byte at a time, so it never
// consumes bytes past the prefix; pass a buffered reader for speed.
func readUvarint(r io.Reader) (uint64, error) {
	br, ok := r.(io.ByteReader)
	var one [1]byte
	var x uint64
	for i := 0; ; i++ {
		var b byte
		var err error
		if ok {
			b, err = br.ReadByte()
		} else {
			_, err = io.ReadFull(r, one[:])
			b = one[0]
		}
		if err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		// The 10th byte may only carry bit 63; anything more (a continuation
		// bit included) overflows uint64 or makes the prefix too long.
		if i == binary.MaxVarintLen64-1 && b > 1 {
			return 0, fmt.Errorf("%w: longer than 64 bits", ErrBadVarint)
		}
		x |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, fmt.Errorf("%w: not minimally encoded", ErrBadVarint)
			}
			return x, nil
		}
	}
}

// readPayload reads exactly n bytes. Up to preallocLimit it allocates n at
// once; above, it doubles the buffer as data arrives (amortised one extra
// copy), bounding what an announced-but-unsent payload can cost.
func readPayload(r io.Reader, n int) ([]byte, error) {
	if n <= preallocLimit {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, noEOF(err)
		}
		return buf, nil
	}
	buf := make([]byte, 0, preallocLimit)
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		m, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, noEOF(err)
		}
	}
	return buf, nil
}

// noEOF turns a clean EOF inside a frame into io.ErrUnexpectedEOF: once the
// prefix is read, the frame has started.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
