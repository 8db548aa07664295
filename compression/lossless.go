package compression

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Lossless names the byte-level stage applied after the codec. Like CodecID
// it is part of the frame format.
type Lossless uint8

const (
	// LosslessNone sends the codec output as is.
	LosslessNone Lossless = 0
	// LosslessZstd byte-shuffles the codec output into ShuffleWidth planes
	// and compresses it with zstd at its fastest level with entropy coding
	// of literal-only blocks forced on. Without that option klauspost/zstd
	// stores float noise raw (ratio 1.00); with it, shuffled N(0,1) values
	// shrink by about 1.17-1.18×. The zstd frame is single-segment and must
	// declare its content size, which must equal the frame's rawLen.
	LosslessZstd Lossless = 1
	// LosslessS2 byte-shuffles like LosslessZstd and compresses with s2
	// (klauspost's Snappy successor): several times faster than zstd, for
	// links fast enough that zstd's time would cost more than its bytes
	// save. It finds little in float noise; it pays on sparse or
	// quantized payloads with long runs.
	LosslessS2 Lossless = 2
)

var losslessNames = [...]string{LosslessNone: "none", LosslessZstd: "zstd", LosslessS2: "s2"}

func (l Lossless) valid() bool { return int(l) < len(losslessNames) }

func (l Lossless) String() string {
	if l.valid() {
		return losslessNames[l]
	}
	return fmt.Sprintf("lossless(%d)", uint8(l))
}

// ErrUnknownLossless is returned for a lossless id or name that does not exist.
var ErrUnknownLossless = errors.New("compression: unknown lossless stage")

// LosslessByName parses "none", "zstd" or "s2".
func LosslessByName(name string) (Lossless, error) {
	for i, n := range losslessNames {
		if n == name {
			return Lossless(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownLossless, name)
}

// maxRawLen bounds any codec payload (Register enforces
// MaxEncodedLen(MaxCount) <= maxRawLen) and so is the memory cap of the
// shared zstd decoder. Each call is further capped at its frame's rawLen
// (WithDecodeAllCapLimit and a buffer whose capacity is exactly rawLen), so
// a small frame cannot decompress into gigabytes.
const maxRawLen = 8 * MaxCount

// zstdMaxWindow caps the zstd window the decoder accepts; EncodePart
// sends payloads larger than this without zstd.
const zstdMaxWindow = 8 << 20

// The zstd encoder and decoder are shared: EncodeAll and DecodeAll are safe
// for concurrent use and keep GOMAXPROCS workers each, so one instance
// serves all goroutines without per-call setup.
var (
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithAllLitEntropyCompression(true),
			zstd.WithEncoderCRC(false), // the frame has its own crc32c
			zstd.WithSingleSegment(true),
			zstd.WithEncoderConcurrency(0),
		)
	})
	zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(maxRawLen),
			// decompressZstd admits only a single-segment first frame; a
			// concatenated second one could ask for a window: keep it small.
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecodeAllCapLimit(true),
		)
	})
)

// bufPool holds scratch byte slices for the shuffle and zstd stages.
var bufPool sync.Pool

// getBuf returns a slice of length n; its capacity may be larger.
func getBuf(n int) *[]byte {
	if p, ok := bufPool.Get().(*[]byte); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n)
	return &b
}

func putBuf(p *[]byte) { bufPool.Put(p) }

// compressZstd appends the zstd form of raw (shuffled by width) to dst.
func compressZstd(dst, raw []byte, width int) ([]byte, error) {
	enc, err := zstdEncoder()
	if err != nil {
		return dst, fmt.Errorf("compression: zstd encoder: %w", err)
	}
	sp := getBuf(len(raw))
	defer putBuf(sp)
	shuffle(*sp, raw, width)
	return enc.EncodeAll(*sp, dst), nil
}

// decompressZstd decodes src, which must be a single-segment zstd frame
// declaring exactly rawLen bytes, and unshuffles it into out (len rawLen).
func decompressZstd(out, src []byte, width int) error {
	rawLen := len(out)
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return fmt.Errorf("%w: zstd header: %v", ErrMalformed, err)
	}
	// Checking the declared size first rejects bombs and lies without
	// decoding a block, and keeps hostile frames off klauspost's paths
	// that print to stderr when a cap is hit mid-frame.
	if h.Skippable || !h.SingleSegment || !h.HasFCS || h.DictionaryID != 0 || h.FrameContentSize != uint64(rawLen) {
		return fmt.Errorf("%w: zstd frame declares %d bytes (single segment %v), want %d",
			ErrMalformed, h.FrameContentSize, h.SingleSegment, rawLen)
	}
	dec, err := zstdDecoder()
	if err != nil {
		return fmt.Errorf("compression: zstd decoder: %w", err)
	}
	sp := getBuf(rawLen)
	defer putBuf(sp)
	// Capacity exactly rawLen: with WithDecodeAllCapLimit, DecodeAll stops
	// once the output would outgrow it, whatever the frames claim.
	got, err := dec.DecodeAll(src, (*sp)[:0:rawLen])
	if err != nil {
		return fmt.Errorf("%w: zstd: %v", ErrMalformed, err)
	}
	if len(got) != rawLen {
		return fmt.Errorf("%w: zstd produced %d bytes, want %d", ErrMalformed, len(got), rawLen)
	}
	unshuffle(out, got, width)
	return nil
}

// compressS2 appends the s2 block form of raw (shuffled by width) to dst.
func compressS2(dst, raw []byte, width int) []byte {
	sp := getBuf(len(raw))
	defer putBuf(sp)
	shuffle(*sp, raw, width)
	n := len(dst)
	dst = slices.Grow(dst, s2.MaxEncodedLen(len(raw)))
	enc := s2.Encode(dst[n:cap(dst)], *sp)
	return dst[:n+len(enc)]
}

// decompressS2 decodes the s2 block src, which must declare exactly
// len(out) bytes, and unshuffles it into out.
func decompressS2(out, src []byte, width int) error {
	n, err := s2.DecodedLen(src)
	if err != nil || n != len(out) {
		return fmt.Errorf("%w: s2 block declares %d bytes (%v), want %d", ErrMalformed, n, err, len(out))
	}
	sp := getBuf(len(out))
	defer putBuf(sp)
	got, err := s2.Decode((*sp)[:len(out)], src)
	if err != nil || len(got) != len(out) {
		return fmt.Errorf("%w: s2: %v", ErrMalformed, err)
	}
	unshuffle(out, got, width)
	return nil
}

// shuffle writes the bytes of src, seen as elements of width bytes, as width
// planes: byte j of every element, then byte j+1, ... A tail shorter than
// one element is copied as is. len(dst) must equal len(src).
func shuffle(dst, src []byte, width int) {
	n := len(src) / width
	switch width {
	case 1:
		copy(dst, src)
		return
	case 2:
		p0, p1 := dst[:n], dst[n:2*n]
		p1 = p1[:len(p0)] // lets the compiler drop the bounds checks
		for i := range p0 {
			x := binary.LittleEndian.Uint16(src[2*i:])
			p0[i], p1[i] = byte(x), byte(x>>8)
		}
	case 4:
		p0, p1, p2, p3 := dst[:n], dst[n:2*n], dst[2*n:3*n], dst[3*n:4*n]
		p1, p2, p3 = p1[:len(p0)], p2[:len(p0)], p3[:len(p0)]
		for i := range p0 {
			x := binary.LittleEndian.Uint32(src[4*i:])
			p0[i], p1[i], p2[i], p3[i] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
		}
	default:
		for j := range width {
			p := dst[j*n : (j+1)*n]
			for i := range p {
				p[i] = src[i*width+j]
			}
		}
	}
	copy(dst[n*width:], src[n*width:])
}

// unshuffle inverts shuffle.
func unshuffle(dst, src []byte, width int) {
	n := len(src) / width
	switch width {
	case 1:
		copy(dst, src)
		return
	case 2:
		p0, p1 := src[:n], src[n:2*n]
		p1 = p1[:len(p0)]
		for i := range p0 {
			binary.LittleEndian.PutUint16(dst[2*i:], uint16(p0[i])|uint16(p1[i])<<8)
		}
	case 4:
		p0, p1, p2, p3 := src[:n], src[n:2*n], src[2*n:3*n], src[3*n:4*n]
		p1, p2, p3 = p1[:len(p0)], p2[:len(p0)], p3[:len(p0)]
		for i := range p0 {
			binary.LittleEndian.PutUint32(dst[4*i:],
				uint32(p0[i])|uint32(p1[i])<<8|uint32(p2[i])<<16|uint32(p3[i])<<24)
		}
	default:
		for j := range width {
			p := src[j*n : (j+1)*n]
			for i := range p {
				dst[i*width+j] = p[i]
			}
		}
	}
	copy(dst[n*width:], src[n*width:])
}
