package trainer

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// IDX element types (the third byte of the magic number). Only unsigned
// bytes are decoded; MNIST and its relatives use nothing else.
const idxUint8 = 0x08

// MaxIDXBytes caps the element bytes an IDX file may declare. The MNIST
// training images are 47 MB; EMNIST "byclass" is about 550 MB.
const MaxIDXBytes = 1 << 30

// maxIDXDims caps the dimension count; real files use 1 (labels) or 3 (images).
const maxIDXDims = 8

// IDX is a decoded IDX file of unsigned bytes: Data holds prod(Dims)
// elements in row-major order.
type IDX struct {
	Dims []int
	Data []byte
}

// ReadIDX decodes an IDX stream, gunzipping it first when it starts with
// the gzip magic (an IDX magic always starts with two zero bytes, so the two
// cannot be confused). Input is treated as hostile: the declared size is
// checked against MaxIDXBytes before anything is read, memory grows only as
// bytes actually arrive, and short or over-long data is an error.
func ReadIDX(r io.Reader) (*IDX, error) {
	br, done, err := maybeGunzip(r)
	if err != nil {
		return nil, fmt.Errorf("idx: %w", err)
	}
	defer done()

	var magic [4]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil {
		return nil, fmt.Errorf("idx: truncated magic: %w", eofIsUnexpected(err))
	}
	if magic[0] != 0 || magic[1] != 0 {
		return nil, fmt.Errorf("idx: bad magic %02x%02x%02x%02x (want 0000TTNN)", magic[0], magic[1], magic[2], magic[3])
	}
	if magic[2] != idxUint8 {
		return nil, fmt.Errorf("idx: unsupported element type 0x%02x (only 0x08, unsigned byte)", magic[2])
	}
	nd := int(magic[3])
	if nd < 1 || nd > maxIDXDims {
		return nil, fmt.Errorf("idx: %d dimensions (want 1..%d)", nd, maxIDXDims)
	}

	dims := make([]int, nd)
	total := int64(1)
	for i := range dims {
		var b [4]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return nil, fmt.Errorf("idx: truncated header (dimension %d): %w", i, eofIsUnexpected(err))
		}
		d := int64(binary.BigEndian.Uint32(b[:]))
		// Check before multiplying: d < 2^32 and total <= MaxIDXBytes < 2^31 cannot overflow int64.
		total *= d
		if total > MaxIDXBytes {
			return nil, fmt.Errorf("idx: declared size exceeds %d bytes (dims so far %v, next %d)", MaxIDXBytes, dims[:i], d)
		}
		dims[i] = int(d)
	}

	// ReadAll over a limit grows with the bytes that really arrive, so a
	// header that lies about its size costs no more than the file itself.
	data, err := io.ReadAll(io.LimitReader(br, total+1))
	if err != nil {
		return nil, fmt.Errorf("idx: reading data: %w", err)
	}
	switch {
	case int64(len(data)) < total:
		return nil, fmt.Errorf("idx: truncated data: dims %v need %d bytes, got %d", dims, total, len(data))
	case int64(len(data)) > total:
		return nil, fmt.Errorf("idx: trailing bytes after %d data bytes (dims %v)", total, dims)
	}
	return &IDX{Dims: dims, Data: data}, nil
}

// maybeGunzip returns r, decompressed when it starts with the gzip magic.
// Callers cap what they read, which also bounds a decompression bomb.
func maybeGunzip(r io.Reader) (*bufio.Reader, func(), error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("bad gzip header: %w", err)
		}
		return bufio.NewReader(z), func() { z.Close() }, nil
	}
	return br, func() {}, nil
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
