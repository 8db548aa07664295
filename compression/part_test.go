package compression

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

var losslesses = []Lossless{LosslessNone, LosslessZstd, LosslessS2}

func normals(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// reference is what a frame round trip through c must give for src: the
// exact values for fp32 and fp16 (against an independent conversion), and
// the codec's own encode/decode for the blockwise codecs, whose error
// bounds quant_test.go checks.
func reference(c Codec, src []float32) []float32 {
	out := make([]float32, len(src))
	switch c.ID() {
	case IDFP32, IDFP16:
		for i, x := range src {
			out[i] = want(c, x)
		}
	default:
		if err := c.Decode(out, c.Encode(nil, src)); err != nil {
			panic(err)
		}
	}
	return out
}

// want is what a round trip through c must give for x.
func want(c Codec, x float32) float32 {
	if c.ID() == IDFP16 {
		return Float32FromHalf(HalfFromFloat32(x))
	}
	return x
}

// buildFrame assembles a frame from arbitrary fields with a valid checksum,
// so tests reach the check they aim at instead of the checksum.
func buildFrame(version byte, codec CodecID, l Lossless, count, rawLen uint32, payload []byte) []byte {
	f := []byte{version, byte(codec), byte(l), 0}
	f = binary.LittleEndian.AppendUint32(f, count)
	f = binary.LittleEndian.AppendUint32(f, rawLen)
	f = append(f, payload...)
	return reseal(f)
}

// reseal appends a correct crc32c to f.
func reseal(f []byte) []byte {
	return binary.LittleEndian.AppendUint32(f, crc32.Checksum(f, crc32.MakeTable(crc32.Castagnoli)))
}

// resealed recomputes the checksum of an existing frame after an edit.
func resealed(frame []byte) []byte {
	f := bytes.Clone(frame[:len(frame)-4])
	return reseal(f)
}

func mustEncode(t testing.TB, c Codec, l Lossless, v []float32) []byte {
	t.Helper()
	f, err := EncodePart(nil, c, l, v)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPartRoundTrip(t *testing.T) {
	for _, c := range Codecs() {
		for _, l := range losslesses {
			for _, n := range []int{0, 1, 7, 1000, 100_000} {
				t.Run(fmt.Sprintf("%s/%s/%d", c.Name(), l, n), func(t *testing.T) {
					src := normals(n, uint64(n))
					frame := mustEncode(t, c, l, src)
					if got, err := PeekCount(frame); err != nil || got != n {
						t.Fatalf("PeekCount = %d, %v", got, err)
					}
					dst := make([]float32, n)
					if err := DecodePart(dst, frame); err != nil {
						t.Fatal(err)
					}
					ref := reference(c, src)
					for i := range src {
						if math.Float32bits(dst[i]) != math.Float32bits(ref[i]) {
							t.Fatalf("value %d: %v, want %v", i, dst[i], ref[i])
						}
					}
					raw := c.MaxEncodedLen(n)
					switch {
					case l != LosslessZstd || n < 100_000:
						// Tiny inputs fall back to none, and s2 finds
						// nothing in float noise; never grow.
						if len(frame) > raw+FrameOverhead {
							t.Fatalf("frame %d bytes for %d raw", len(frame), raw)
						}
					default:
						if Lossless(frame[2]) != LosslessZstd {
							t.Fatalf("zstd not applied to %d normals", n)
						}
						ratio := float64(raw) / float64(len(frame)-FrameOverhead)
						if ratio < 1.1 {
							t.Fatalf("zstd ratio %.3f, want >= 1.1 on shuffled normals", ratio)
						}
					}
				})
			}
		}
	}
}

func TestEncodePartAppends(t *testing.T) {
	v := normals(100, 1)
	prefix := []byte("hdr")
	f, err := EncodePart(prefix, FP16{}, LosslessZstd, v)
	if err != nil {
		t.Fatal(err)
	}
	if string(f[:3]) != "hdr" {
		t.Fatal("prefix lost")
	}
	if !bytes.Equal(f[3:], mustEncode(t, FP16{}, LosslessZstd, v)) {
		t.Fatal("frame after a prefix differs from a fresh frame")
	}
	// The zstd fallback must not keep the compressed bytes behind the raw ones.
	inc := make([]float32, 64)
	r := rand.New(rand.NewPCG(9, 9))
	for i := range inc {
		inc[i] = math.Float32frombits(r.Uint32()&0x3fffffff | 0x20000000) // finite noise
	}
	f2, err := EncodePart(prefix, FP32{}, LosslessZstd, inc)
	if err != nil {
		t.Fatal(err)
	}
	if Lossless(f2[3+2]) != LosslessNone || len(f2) != 3+FrameOverhead+4*len(inc) {
		t.Fatalf("incompressible input: lossless %d, len %d", f2[5], len(f2))
	}
	out := make([]float32, len(inc))
	if err := DecodePart(out, f2[3:]); err != nil {
		t.Fatal(err)
	}
}

func TestDeterministic(t *testing.T) {
	v := normals(50_000, 2)
	for _, c := range Codecs() {
		for _, l := range losslesses {
			ref := mustEncode(t, c, l, v)
			var wg sync.WaitGroup
			for range 2 * runtime.GOMAXPROCS(0) {
				wg.Go(func() {
					if f, err := EncodePart(nil, c, l, v); err != nil || !bytes.Equal(f, ref) {
						t.Errorf("%s/%s: concurrent encode differs (err %v)", c.Name(), l, err)
					}
					dst := make([]float32, len(v))
					if err := DecodePart(dst, ref); err != nil {
						t.Errorf("%s/%s: concurrent decode: %v", c.Name(), l, err)
					}
				})
			}
			wg.Wait()
		}
	}
}

func TestEncodePartRejects(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(-1))
	for _, v := range [][]float32{{1, nan}, {inf}, {0, 0, float32(math.Inf(1))}} {
		for _, l := range losslesses {
			if _, err := EncodePart(nil, FP16{}, l, v); !errors.Is(err, ErrNonFinite) {
				t.Errorf("%v: err %v, want ErrNonFinite", v, err)
			}
		}
	}
	if _, err := EncodePart(nil, nil, LosslessNone, nil); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("nil codec: %v", err)
	}
	if _, err := EncodePart(nil, fakeCodec{FP32{}, "other", 0}, LosslessNone, nil); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("unregistered codec: %v", err)
	}
	if _, err := EncodePart(nil, FP32{}, 7, nil); !errors.Is(err, ErrUnknownLossless) {
		t.Errorf("lossless 7: %v", err)
	}
	if _, err := EncodePart(nil, FP32{}, LosslessNone, make([]float32, MaxCount+1)); err == nil {
		t.Error("MaxCount+1 values accepted")
	}
}

// fakeCodec stands in for a codec under another name (and id, if set).
type fakeCodec struct {
	Codec
	name string
	id   CodecID
}

func (f fakeCodec) Name() string { return f.name }
func (f fakeCodec) ID() CodecID {
	if f.id != 0 {
		return f.id
	}
	return f.Codec.ID()
}

func TestBitFlipsDetected(t *testing.T) {
	v := normals(200, 3)
	for _, c := range Codecs() {
		for _, l := range losslesses {
			frame := mustEncode(t, c, l, v)
			dst := make([]float32, len(v))
			for i := range frame {
				for b := range 8 {
					f := bytes.Clone(frame)
					f[i] ^= 1 << b
					if err := DecodePart(dst, f); err == nil {
						t.Fatalf("%s/%s: flip of byte %d bit %d accepted", c.Name(), l, i, b)
					}
				}
			}
		}
	}
}

func TestTruncatedAndExtended(t *testing.T) {
	v := normals(300, 4)
	for _, c := range Codecs() {
		for _, l := range losslesses {
			frame := mustEncode(t, c, l, v)
			dst := make([]float32, len(v))
			for n := range len(frame) {
				if err := DecodePart(dst, frame[:n]); err == nil {
					t.Fatalf("%s/%s: %d-byte prefix accepted", c.Name(), l, n)
				}
			}
			// Extra bytes, even with a recomputed checksum, are refused.
			long := reseal(append(bytes.Clone(frame[:len(frame)-4]), 0))
			if err := DecodePart(dst, long); err == nil {
				t.Fatalf("%s/%s: trailing byte accepted", c.Name(), l)
			}
		}
	}
}

func TestHeaderChecks(t *testing.T) {
	good := mustEncode(t, FP32{}, LosslessNone, []float32{1, 2, 3})
	edit := func(f func([]byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return resealed(b)
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		dst   int
		err   error
	}{
		{"version 0", edit(func(b []byte) { b[0] = 0 }), 3, ErrVersion},
		{"version 2", edit(func(b []byte) { b[0] = 2 }), 3, ErrVersion},
		{"codec 0", edit(func(b []byte) { b[1] = 0 }), 3, ErrUnknownCodec},
		{"codec 200", edit(func(b []byte) { b[1] = 200 }), 3, ErrUnknownCodec},
		{"lossless 9", edit(func(b []byte) { b[2] = 9 }), 3, ErrUnknownLossless},
		{"reserved", edit(func(b []byte) { b[3] = 1 }), 3, ErrMalformed},
		{"count > MaxCount", buildFrame(1, IDFP32, LosslessNone, MaxCount+1, 12, make([]byte, 12)), 3, ErrMalformed},
		{"count says 4", edit(func(b []byte) { b[4] = 4 }), 4, ErrMalformed}, // rawLen 12 < 16: fp32 rejects
		{"rawLen too big", edit(func(b []byte) { b[8] = 16 }), 3, ErrMalformed},
		{"rawLen huge", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], math.MaxUint32) }), 3, ErrMalformed},
		{"rawLen short", buildFrame(1, IDFP32, LosslessNone, 3, 8, make([]byte, 8)), 3, ErrMalformed},
		{"fp16 rawLen of fp32", buildFrame(1, IDFP16, LosslessNone, 3, 12, make([]byte, 12)), 3, ErrMalformed},
		{"dst too short", good, 2, ErrCountMismatch},
		{"dst too long", good, 4, ErrCountMismatch},
		{"nil dst", good, 0, ErrCountMismatch},
		{"checksum", append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^0x80), 3, ErrChecksum},
		{"empty", nil, 0, ErrMalformed},
		{"header only", good[:12], 3, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dst []float32
			if tc.dst > 0 {
				dst = make([]float32, tc.dst)
			}
			err := DecodePart(dst, tc.frame)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
	if n, err := PeekCount(good); n != 3 || err != nil {
		t.Fatalf("PeekCount = %d, %v", n, err)
	}
	if _, err := PeekCount(good[:5]); err == nil {
		t.Fatal("PeekCount accepted a truncated header")
	}
	// An empty part is a valid frame.
	empty := mustEncode(t, FP16{}, LosslessZstd, nil)
	if len(empty) != FrameOverhead || DecodePart(nil, empty) != nil {
		t.Fatalf("empty part: % x", empty)
	}
}

func TestNonFiniteRejected(t *testing.T) {
	for _, bits := range []uint32{0x7fc00000, 0x7f800000, 0xff800000, 0x7f800001} {
		raw := FP32{}.Encode(nil, []float32{1, 2, 3, 4})
		binary.LittleEndian.PutUint32(raw[8:], bits)
		frames := map[string][]byte{
			"fp32/none": buildFrame(1, IDFP32, LosslessNone, 4, 16, raw),
			"fp32/zstd": buildFrame(1, IDFP32, LosslessZstd, 4, 16, zstdPayload(t, raw, 4)),
		}
		h := FP16{}.Encode(nil, []float32{1, 2, 3, 4})
		binary.LittleEndian.PutUint16(h[4:], uint16(bits>>16)&0xfe00|0x7c00|uint16(bits&1))
		frames["fp16/none"] = buildFrame(1, IDFP16, LosslessNone, 4, 8, h)
		frames["fp16/zstd"] = buildFrame(1, IDFP16, LosslessZstd, 4, 8, zstdPayload(t, h, 2))
		for name, f := range frames {
			dst := make([]float32, 4)
			if err := DecodePart(dst, f); !errors.Is(err, ErrNonFinite) {
				t.Errorf("%s %#08x: err %v, want ErrNonFinite", name, bits, err)
			}
			for i, x := range dst {
				if x != 0 {
					t.Errorf("%s: dst[%d] = %v left behind after an error", name, i, x)
				}
			}
		}
	}
}

// zstdPayload compresses raw the way EncodePart does, even where EncodePart
// would fall back to none.
func zstdPayload(t testing.TB, raw []byte, width int) []byte {
	t.Helper()
	p, err := compressZstd(nil, raw, width)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestZstdLies(t *testing.T) {
	const count = 1000
	rawLen := uint32(4 * count)
	raw := FP32{}.Encode(nil, make([]float32, count))
	dst := make([]float32, count)
	check := func(name string, payload []byte) {
		t.Helper()
		if err := DecodePart(dst, buildFrame(1, IDFP32, LosslessZstd, count, rawLen, payload)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	good := zstdPayload(t, raw, 4)
	if err := DecodePart(dst, buildFrame(1, IDFP32, LosslessZstd, count, rawLen, good)); err != nil {
		t.Fatalf("control frame: %v", err)
	}
	check("not zstd", bytes.Repeat([]byte{0xAB}, 64))
	check("empty payload", nil)
	check("truncated zstd", good[:len(good)-3])
	check("declares less", zstdPayload(t, raw[:len(raw)-4], 4))
	check("declares more", zstdPayload(t, append(bytes.Clone(raw), 0, 0, 0, 0), 4))
	check("second frame", append(bytes.Clone(good), good...))

	// Streamed frames carry no content size: refused unread.
	var buf bytes.Buffer
	w, _ := zstd.NewWriter(&buf)
	w.Write(make([]byte, 1<<20))
	w.Close()
	check("streamed, no content size", buf.Bytes())
}

func TestZstdBomb(t *testing.T) {
	// 64 MiB of zeros compresses to a few KiB.
	enc, err := zstd.NewWriter(nil, zstd.WithSingleSegment(true), zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	bomb := enc.EncodeAll(make([]byte, 64<<20), nil)
	t.Logf("bomb: %d bytes of zstd for 64 MiB", len(bomb))
	var h zstd.Header
	if err := h.Decode(bomb); err != nil || !h.SingleSegment || h.HeaderSize != 4+1+4 {
		t.Fatalf("unexpected bomb header %+v, %v", h, err)
	}
	const count = 1024
	dst := make([]float32, count)

	// Honest header, small rawLen: refused from the zstd header alone.
	frame := buildFrame(1, IDFP32, LosslessZstd, count, 4*count, bomb)
	// Lying header: the zstd frame declares the small rawLen but its blocks
	// expand to 64 MiB (they fail on the window the small size implies).
	liar := bytes.Clone(bomb)
	binary.LittleEndian.PutUint32(liar[5:], 4*count)
	liarFrame := buildFrame(1, IDFP32, LosslessZstd, count, 4*count, liar)

	// Hand-made: single segment, content size 4096, then 4096 RLE blocks of
	// 4096 bytes each (16 MiB), none larger than the declared window.
	rle := []byte{0x28, 0xB5, 0x2F, 0xFD, 0xA0}
	rle = binary.LittleEndian.AppendUint32(rle, 4*count)
	for i := range 4096 {
		hdr := uint32(4096)<<3 | 1<<1 // RLE block
		if i == 4095 {
			hdr |= 1 // last
		}
		rle = append(rle, byte(hdr), byte(hdr>>8), byte(hdr>>16), 0x3F)
	}
	rleFrame := buildFrame(1, IDFP32, LosslessZstd, count, 4*count, rle)

	for name, f := range map[string][]byte{"honest": frame, "liar": liarFrame, "rle": rleFrame} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := DecodePart(dst, f)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
		t.Logf("%s: %v; allocated %d KiB", name, err, (after.TotalAlloc-before.TotalAlloc)>>10)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
			t.Errorf("%s: decoding allocated %d MiB", name, alloc>>20)
		}
	}
}

func TestRegistry(t *testing.T) {
	for _, name := range []string{"fp32", "fp16"} {
		c, err := ByName(name)
		if err != nil || c.Name() != name {
			t.Fatalf("ByName(%q) = %v, %v", name, c, err)
		}
		if c2, err := Lookup(c.ID()); err != nil || c2.Name() != name {
			t.Fatalf("Lookup(%d) = %v, %v", c.ID(), c2, err)
		}
	}
	if _, err := ByName("int9"); !errors.Is(err, ErrUnknownCodec) {
		t.Fatalf("ByName(int9): %v", err)
	}
	if _, err := Lookup(0); !errors.Is(err, ErrUnknownCodec) {
		t.Fatalf("Lookup(0): %v", err)
	}
	if IDFP16.String() != "fp16" || CodecID(77).String() != "codec(77)" {
		t.Fatal("CodecID.String")
	}
	for name, want := range map[string]Lossless{"none": LosslessNone, "zstd": LosslessZstd, "s2": LosslessS2} {
		if l, err := LosslessByName(name); err != nil || l != want || l.String() != name {
			t.Fatalf("LosslessByName(%q) = %v, %v", name, l, err)
		}
	}
	if _, err := LosslessByName("lz4"); !errors.Is(err, ErrUnknownLossless) {
		t.Fatalf("LosslessByName(lz4): %v", err)
	}
	for _, c := range []Codec{
		FP32{},                             // id and name taken
		fakeCodec{FP32{}, "fp32-again", 0}, // id taken
		fakeCodec{FP16{}, "fp16", 99},      // name taken
		zeroID{},                           // id 0 is reserved
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%s id %d) did not panic", c.Name(), c.ID())
				}
			}()
			Register(c)
		}()
	}
}

type zeroID struct{ FP16 }

func (zeroID) ID() CodecID  { return 0 }
func (zeroID) Name() string { return "zero" }

func TestShuffleInverse(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, w := range []int{1, 2, 3, 4, 8} {
		for _, n := range []int{0, 1, 5, 17, 64, 1001} {
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			mid, back := make([]byte, n), make([]byte, n)
			shuffle(mid, src, w)
			unshuffle(back, mid, w)
			if !bytes.Equal(back, src) {
				t.Fatalf("width %d, n %d: unshuffle(shuffle(x)) != x", w, n)
			}
			if w == 4 && n >= 8 && (mid[0] != src[0] || mid[1] != src[4] || mid[n/4] != src[1]) {
				t.Fatalf("width 4: planes not laid out byte-major")
			}
		}
	}
}

// Codecs that find non-finite values in their own pass (fp16, bf16,
// int8, int4) still refuse them wherever they sit, on the fast paths'
// lengths too; and frames that decode to Inf or NaN there are refused.
func TestNonFiniteFoundInTheCodecPass(t *testing.T) {
	for _, c := range Codecs() {
		for _, n := range []int{5, 16, 40, 1000} {
			for _, at := range []int{0, n / 2, n - 1} {
				for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
					v := normals(n, uint64(n))
					v[at] = bad
					if _, err := EncodePart(nil, c, LosslessNone, v); !errors.Is(err, ErrNonFinite) {
						t.Fatalf("%s, %d values, %v at %d: err %v", c.Name(), n, bad, at, err)
					}
				}
			}
		}
	}
	for _, n := range []int{16, 40, 1000} {
		for _, at := range []int{0, n / 2, n - 1} {
			for name, pattern := range map[string]uint16{"fp16 inf": 0x7c00, "fp16 nan": 0xfe01, "bf16 inf": 0xff80, "bf16 nan": 0x7f81} {
				id, codec := IDFP16, Codec(FP16{})
				if strings.HasPrefix(name, "bf16") {
					id, codec = IDBF16, BF16{}
				}
				raw := codec.Encode(nil, normals(n, 3))
				binary.LittleEndian.PutUint16(raw[2*at:], pattern)
				if err := DecodePart(make([]float32, n), buildFrame(1, id, LosslessNone, uint32(n), uint32(len(raw)), raw)); !errors.Is(err, ErrNonFinite) {
					t.Fatalf("%s at %d of %d: err %v", name, at, n, err)
				}
			}
		}
		// int8: a block whose scale times 127 overflows decodes to Inf.
		raw := Int8{Block: 16}.Encode(nil, normals(n, 4))
		binary.LittleEndian.PutUint32(raw[4:], math.Float32bits(math.MaxFloat32))
		raw[len(raw)-n] = 127
		if err := DecodePart(make([]float32, n), buildFrame(1, IDInt8, LosslessNone, uint32(n), uint32(len(raw)), raw)); !errors.Is(err, ErrNonFinite) {
			t.Fatalf("int8 overflowing block, %d values: err %v", n, err)
		}
	}
}
