package compression

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"time"
)

// Frame layout of one tensor part, little endian:
//
//	off  size  field
//	0    1     version (= Version)
//	1    1     codec id (CodecID)
//	2    1     lossless id (Lossless)
//	3    1     reserved, must be 0
//	4    4     count: number of float32 values
//	8    4     rawLen: codec payload length before the lossless stage
//	12   n     payload (codec output, after the lossless stage)
//	12+n 4     crc32c (Castagnoli) of bytes [0, 12+n)
const (
	Version       = 1
	headerLen     = 12
	trailerLen    = 4
	FrameOverhead = headerLen + trailerLen // bytes a frame adds to its payload

	// MaxCount is the most values one frame may carry (256 MiB as fp32).
	// Larger tensors are sent as several parts; the cap bounds what a
	// receiver allocates for one message.
	MaxCount = 1 << 26
)

// Errors returned by DecodePart and PeekCount (besides ErrUnknownCodec and
// ErrUnknownLossless), wrapped with detail; test with errors.Is. All of them
// mean the frame must be dropped and the sender blamed, except
// ErrCountMismatch, which may be the receiver's own mistake.
var (
	ErrMalformed     = errors.New("compression: malformed frame")
	ErrVersion       = errors.New("compression: unsupported frame version")
	ErrChecksum      = errors.New("compression: checksum mismatch")
	ErrCountMismatch = errors.New("compression: value count mismatch")
	ErrNonFinite     = errors.New("compression: NaN or Inf value")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the decoded fixed part of a frame.
type header struct {
	codec    Codec
	lossless Lossless
	count    int
	rawLen   int
}

// EncodePart appends one frame carrying values, encoded with c and then l,
// to dst. It refuses NaN and Inf (a peer must not send what every receiver
// will reject) and more than MaxCount values.
//
// l is a request: when zstd would not make the payload smaller (empty or
// incompressible input) the frame is written with LosslessNone, which the
// header records. The output is a deterministic function of (c, l, values)
// for a given build of this package.
func EncodePart(dst []byte, c Codec, l Lossless, values []float32) ([]byte, error) {
	out, _, err := EncodePartStats(dst, c, l, values)
	return out, err
}

// StageStats is what the lossless stage did to one frame: Raw bytes of
// codec output in, Out bytes out, in Took. Zero when no stage ran.
type StageStats struct {
	Raw, Out int
	Took     time.Duration
}

// EncodePartStats is EncodePart, also reporting the lossless stage's
// work, so a caller can tell whether the stage pays on its link (Gate).
func EncodePartStats(dst []byte, c Codec, l Lossless, values []float32) (_ []byte, st StageStats, _ error) {
	if c == nil {
		return dst, st, fmt.Errorf("%w: nil codec", ErrUnknownCodec)
	}
	// Receivers decode with the registered codec of this id, so a
	// stand-in would silently produce frames they misread.
	if reg, err := Lookup(c.ID()); err != nil || reg.Name() != c.Name() {
		return dst, st, fmt.Errorf("%w: codec %q (id %d) is not registered", ErrUnknownCodec, c.Name(), uint8(c.ID()))
	}
	if !l.valid() {
		return dst, st, fmt.Errorf("%w: id %d", ErrUnknownLossless, uint8(l))
	}
	if len(values) > MaxCount {
		return dst, st, fmt.Errorf("compression: %d values exceed MaxCount %d", len(values), MaxCount)
	}
	// Codecs that see every value's exponent anyway report non-finite
	// input from that pass; for the others, scan first.
	fe, fused := c.(finiteEncoder)
	if !fused {
		if i := FirstNonFinite(values); i >= 0 {
			return dst, st, nonFinite(values, i)
		}
	}
	encode := func(d []byte) ([]byte, error) {
		if !fused {
			return c.Encode(d, values), nil
		}
		out, finite := fe.encodeFinite(d, values)
		if !finite {
			if i := FirstNonFinite(values); i >= 0 {
				return out, nonFinite(values, i)
			}
		}
		return out, nil
	}

	start := len(dst)
	// One allocation for the whole frame (zstd output is never larger than
	// raw, or raw is sent instead).
	dst = slices.Grow(dst, FrameOverhead+c.MaxEncodedLen(len(values)))
	dst = append(dst, make([]byte, headerLen)...)
	body := start + headerLen
	var rawLen int
	switch l {
	case LosslessNone:
		var err error
		if dst, err = encode(dst); err != nil {
			return dst[:start], st, err
		}
		rawLen = len(dst) - body
	case LosslessZstd, LosslessS2:
		rp := getBuf(0)
		defer putBuf(rp)
		var err error
		if *rp, err = encode((*rp)[:0]); err != nil {
			return dst[:start], st, err
		}
		raw := *rp
		rawLen = len(raw)
		switch {
		case rawLen > c.MaxEncodedLen(len(values)):
			// reported below
		case l == LosslessZstd && rawLen > zstdMaxWindow:
			// zstd frames are single-segment, so their window is their
			// size, and the decoder caps windows (a hostile frame must not
			// make it allocate much): larger payloads go without zstd.
			dst = append(dst, raw...)
			l = LosslessNone
		default:
			began := time.Now()
			if l == LosslessS2 {
				dst = compressS2(dst, raw, c.ShuffleWidth())
			} else {
				var err error
				if dst, err = compressZstd(dst, raw, c.ShuffleWidth()); err != nil {
					return dst[:start], st, err
				}
			}
			st = StageStats{Raw: rawLen, Out: len(dst) - body, Took: time.Since(began)}
			if len(dst)-body >= rawLen {
				dst = append(dst[:body], raw...)
				l = LosslessNone
			}
		}
	}
	if rawLen > c.MaxEncodedLen(len(values)) {
		return dst[:start], st, fmt.Errorf("compression: codec %q broke its contract: %d bytes for %d values", c.Name(), rawLen, len(values))
	}

	h := dst[start:body]
	h[0] = Version
	h[1] = byte(c.ID())
	h[2] = byte(l)
	h[3] = 0
	binary.LittleEndian.PutUint32(h[4:], uint32(len(values)))
	binary.LittleEndian.PutUint32(h[8:], uint32(rawLen))
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli)), st, nil
}

// PeekCount returns the value count of frame after checking its header only
// (not the checksum or payload), so a receiver can size the destination of
// DecodePart. The count is at most MaxCount.
func PeekCount(frame []byte) (int, error) {
	h, err := parseHeader(frame)
	if err != nil {
		return 0, err
	}
	return h.count, nil
}

// parseHeader checks everything that can be checked without reading the
// payload, cheapest first, so garbage costs the receiver almost nothing.
func parseHeader(frame []byte) (header, error) {
	if len(frame) < FrameOverhead {
		return header{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header and checksum", ErrMalformed, len(frame), FrameOverhead)
	}
	if frame[0] != Version {
		return header{}, fmt.Errorf("%w: %d (want %d)", ErrVersion, frame[0], Version)
	}
	if frame[3] != 0 {
		return header{}, fmt.Errorf("%w: reserved byte is %d", ErrMalformed, frame[3])
	}
	c, err := Lookup(CodecID(frame[1]))
	if err != nil {
		return header{}, err
	}
	l := Lossless(frame[2])
	if !l.valid() {
		return header{}, fmt.Errorf("%w: id %d", ErrUnknownLossless, uint8(l))
	}
	count := binary.LittleEndian.Uint32(frame[4:])
	if count > MaxCount {
		return header{}, fmt.Errorf("%w: count %d exceeds MaxCount %d", ErrMalformed, count, MaxCount)
	}
	rawLen := binary.LittleEndian.Uint32(frame[8:])
	if max := c.MaxEncodedLen(int(count)); uint64(rawLen) > uint64(max) {
		return header{}, fmt.Errorf("%w: rawLen %d exceeds %d for %d %s values", ErrMalformed, rawLen, max, count, c.Name())
	}
	payload := len(frame) - FrameOverhead
	if l == LosslessNone && payload != int(rawLen) {
		return header{}, fmt.Errorf("%w: payload %d bytes, rawLen %d", ErrMalformed, payload, rawLen)
	}
	return header{codec: c, lossless: l, count: int(count), rawLen: int(rawLen)}, nil
}

// DecodePart decodes frame into dst, which must hold exactly the frame's
// count of values (see PeekCount). Nothing in the frame is trusted: header
// fields, sizes and the checksum are verified before the payload is used,
// decompression is capped at rawLen, and NaN or Inf values are rejected so
// a broken or hostile peer cannot poison an average. On error dst is zeroed
// (if it was written to at all), never left half-filled with peer data.
// Safe for concurrent use.
func DecodePart(dst []float32, frame []byte) error {
	h, err := parseHeader(frame)
	if err != nil {
		return err
	}
	if h.count != len(dst) {
		return fmt.Errorf("%w: frame has %d values, destination %d", ErrCountMismatch, h.count, len(dst))
	}
	body := len(frame) - trailerLen
	want := binary.LittleEndian.Uint32(frame[body:])
	if got := crc32.Checksum(frame[:body], castagnoli); got != want {
		return fmt.Errorf("%w: crc32c %08x, frame says %08x", ErrChecksum, got, want)
	}
	payload := frame[headerLen:body]

	raw := payload
	if h.lossless != LosslessNone {
		rp := getBuf(h.rawLen)
		defer putBuf(rp)
		raw = *rp
		decompress := decompressZstd
		if h.lossless == LosslessS2 {
			decompress = decompressS2
		}
		if err := decompress(raw, payload, h.codec.ShuffleWidth()); err != nil {
			return err
		}
	}
	finite, err := false, error(nil)
	if fd, ok := h.codec.(finiteDecoder); ok {
		finite, err = fd.decodeFinite(dst, raw) // checked in the same pass
	} else {
		err = h.codec.Decode(dst, raw)
	}
	if err != nil {
		clear(dst)
		if !errors.Is(err, ErrMalformed) {
			err = fmt.Errorf("%w: %s: %v", ErrMalformed, h.codec.Name(), err)
		}
		return err
	}
	if finite {
		return nil
	}
	if i := FirstNonFinite(dst); i >= 0 {
		v := dst[i]
		clear(dst)
		return fmt.Errorf("%w: value %d is %v", ErrNonFinite, i, v)
	}
	return nil
}

// finiteEncoder is a codec whose encoder also tells whether its input was
// all finite, from the pass it makes anyway; EncodePart then does not
// scan the input first.
type finiteEncoder interface {
	encodeFinite(dst []byte, src []float32) ([]byte, bool)
}

// finiteDecoder is a codec whose decoder also tells whether all it wrote
// is finite; DecodePart then does not scan the output.
type finiteDecoder interface {
	decodeFinite(dst []float32, src []byte) (bool, error)
}

// allFinite is whether v is finite, given that a fast path covered
// v[:fast] and saw Inf or NaN there only if special: the rest is scanned.
func allFinite(v []float32, fast int, special bool) bool {
	return FirstNonFinite(v[fast:]) < 0 && (!special || FirstNonFinite(v[:fast]) < 0)
}

func nonFinite(values []float32, i int) error {
	return fmt.Errorf("%w: value %d is %v", ErrNonFinite, i, values[i])
}

// FirstNonFinite returns the index of the first NaN or ±Inf in v, or -1.
// The codecs and the node use it to keep non-finite values off the wire.
func FirstNonFinite(v []float32) int {
	// Eight at a time, one branch: an exponent of all ones plus one
	// exponent step carries into the sign bit, and no other exponent does.
	i := 0
	for ; i+8 <= len(v); i += 8 {
		w := v[i : i+8 : i+8]
		acc := (math.Float32bits(w[0])&0x7f800000 + 0x800000) | (math.Float32bits(w[1])&0x7f800000 + 0x800000) |
			(math.Float32bits(w[2])&0x7f800000 + 0x800000) | (math.Float32bits(w[3])&0x7f800000 + 0x800000) |
			(math.Float32bits(w[4])&0x7f800000 + 0x800000) | (math.Float32bits(w[5])&0x7f800000 + 0x800000) |
			(math.Float32bits(w[6])&0x7f800000 + 0x800000) | (math.Float32bits(w[7])&0x7f800000 + 0x800000)
		if acc&0x80000000 != 0 {
			break // the tail loop finds which
		}
	}
	for ; i < len(v); i++ {
		if math.Float32bits(v[i])&0x7f800000 == 0x7f800000 {
			return i
		}
	}
	return -1
}
