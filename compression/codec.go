package compression

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// CodecID names a lossy (or identity) codec on the wire. The value is part of
// the frame format: an id, once assigned, is never reused for another encoding.
type CodecID uint8

// Codec ids in use. 0 is never valid, so a zeroed header is always rejected.
const (
	IDFP32 CodecID = 1 // little-endian IEEE binary32, bit-exact
	IDFP16 CodecID = 2 // little-endian IEEE binary16, see FP16
)

func (id CodecID) String() string {
	if c, err := Lookup(id); err == nil {
		return c.Name()
	}
	return fmt.Sprintf("codec(%d)", uint8(id))
}

// Codec turns float32 values into bytes and back. The byte form must be a
// pure function of the input values (no randomness, no state), so that every
// peer that decodes the same bytes gets the same float32 bits.
// Implementations must be safe for concurrent use.
type Codec interface {
	ID() CodecID
	Name() string

	// Encode appends the encoding of src to dst and returns it.
	// src is assumed finite; EncodePart checks that before calling.
	Encode(dst []byte, src []float32) []byte

	// Decode decodes exactly len(dst) values from src. It returns an error
	// when src is not a well-formed encoding of len(dst) values (including a
	// wrong length); it never panics on hostile input. On error the content
	// of dst is unspecified.
	Decode(dst []float32, src []byte) error

	// MaxEncodedLen is an upper bound on len(Encode(nil, v)) for any v of
	// length count. DecodePart refuses a frame whose rawLen exceeds it before
	// allocating or decompressing anything.
	MaxEncodedLen(count int) int

	// ShuffleWidth is the byte width of the encoding's elements; the zstd
	// stage transposes the payload into ShuffleWidth byte planes first
	// (sign/exponent bytes compress, mantissa bytes do not). 1 disables it.
	// It is part of the wire format of the codec and must never change.
	ShuffleWidth() int
}

// ErrUnknownCodec is returned for a codec id or name that is not registered.
var ErrUnknownCodec = errors.New("compression: unknown codec")

var (
	registryMu sync.Mutex                 // serialises Register
	registry   atomic.Pointer[[256]Codec] // copy-on-write, so Lookup takes no lock
)

func init() {
	registry.Store(new([256]Codec))
	Register(FP32{})
	Register(FP16{})
}

// Register makes c available to Lookup, ByName and DecodePart. It is meant
// for init functions of codec packages; it panics on id 0, on an id or a
// name that is already taken, because either would make the wire ambiguous.
func Register(c Codec) {
	registryMu.Lock()
	defer registryMu.Unlock()
	old := registry.Load()
	id := c.ID()
	if id == 0 {
		panic("compression: Register: codec id 0 is reserved")
	}
	if old[id] != nil {
		panic(fmt.Sprintf("compression: Register: codec id %d already taken by %q", id, old[id].Name()))
	}
	for _, o := range old {
		if o != nil && o.Name() == c.Name() {
			panic(fmt.Sprintf("compression: Register: codec name %q already taken", c.Name()))
		}
	}
	w := c.ShuffleWidth()
	if w < 1 || w > 255 {
		panic(fmt.Sprintf("compression: Register: codec %q: shuffle width %d out of [1, 255]", c.Name(), w))
	}
	if m := c.MaxEncodedLen(MaxCount); m < 0 || m > maxRawLen {
		panic(fmt.Sprintf("compression: Register: codec %q: MaxEncodedLen(MaxCount) = %d out of [0, %d]", c.Name(), m, maxRawLen))
	}
	next := *old
	next[id] = c
	registry.Store(&next)
}

// Lookup returns the codec registered under id.
func Lookup(id CodecID) (Codec, error) {
	if c := registry.Load()[id]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("%w: id %d", ErrUnknownCodec, uint8(id))
}

// ByName returns the codec registered under name ("fp32", "fp16", ...).
func ByName(name string) (Codec, error) {
	for _, c := range registry.Load() {
		if c != nil && c.Name() == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownCodec, name)
}

// Codecs lists the registered codecs a run can name, in id order, for
// flags, help texts and benchmarks. Mixed is left out: only a Policy
// builds one, for a range of tensors.
func Codecs() []Codec {
	var out []Codec
	for _, c := range registry.Load() {
		if c != nil && c.ID() != IDMixed {
			out = append(out, c)
		}
	}
	return out
}
