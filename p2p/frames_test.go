package p2p

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 127, 128, 300, 1 << 16, preallocLimit, preallocLimit + 1, 3*preallocLimit + 7}
	var buf bytes.Buffer
	var want [][]byte
	for i, n := range sizes {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(i + j*7)
		}
		want = append(want, p)
		if err := WriteFrame(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, wrap := range []struct {
		name string
		r    func([]byte) io.Reader
	}{
		{"ByteReader", func(b []byte) io.Reader { return bytes.NewReader(b) }},
		{"OneByteReader", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
	} {
		t.Run(wrap.name, func(t *testing.T) {
			r := wrap.r(buf.Bytes())
			for i, w := range want {
				got, err := ReadFrame(r, 4*preallocLimit)
				if err != nil {
					t.Fatalf("frame %d (%d bytes): %v", i, len(w), err)
				}
				if got == nil || !bytes.Equal(got, w) {
					t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(w))
				}
			}
			if _, err := ReadFrame(r, 1); err != io.EOF {
				t.Fatalf("after the last frame: err = %v, want io.EOF", err)
			}
		})
	}
}

func TestFrameOversizeRejectedBeforeAllocation(t *testing.T) {
	prefix := binary.AppendUvarint(nil, 1<<40)
	start := time.Now()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadFrame(bytes.NewReader(prefix), 1<<20)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("rejecting took %v", d)
	}
	// The error message may allocate; the payload (or max) must not.
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Fatalf("allocated %d bytes to reject a frame", got)
	}
	// Exactly max is fine, max+1 is not.
	if _, err := ReadFrame(bytes.NewReader(append(binary.AppendUvarint(nil, 3), "abc"...)), 3); err != nil {
		t.Fatalf("frame of exactly max: %v", err)
	}
	if _, err := ReadFrame(bytes.NewReader(append(binary.AppendUvarint(nil, 4), "abcd"...)), 3); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("frame of max+1: err = %v, want ErrFrameTooLarge", err)
	}
}

// A peer may announce a large frame within max and then send nothing: that
// must cost about what it sent, not what it announced.
func TestFrameAnnouncedButUnsentCostsLittle(t *testing.T) {
	const announced = 256 << 20
	in := append(binary.AppendUvarint(nil, announced), make([]byte, 1000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadFrame(bytes.NewReader(in), announced)
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4*preallocLimit {
		t.Fatalf("allocated %d bytes for a frame that delivered 1000", got)
	}
}

func TestFrameTruncated(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"prefix cut", []byte{0x80}, io.ErrUnexpectedEOF},
		{"long prefix cut", []byte{0xff, 0xff, 0xff}, io.ErrUnexpectedEOF},
		{"payload cut", append(binary.AppendUvarint(nil, 10), "12345"...), io.ErrUnexpectedEOF},
		{"payload missing", binary.AppendUvarint(nil, 10), io.ErrUnexpectedEOF},
		{"large payload cut", append(binary.AppendUvarint(nil, 2*preallocLimit), make([]byte, preallocLimit+3)...), io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range []io.Reader{bytes.NewReader(c.in), iotest.OneByteReader(bytes.NewReader(c.in))} {
				if _, err := ReadFrame(r, 4*preallocLimit); err != c.want {
					t.Fatalf("err = %v, want %v", err, c.want)
				}
			}
		})
	}
}

func TestFrameBadVarint(t *testing.T) {
	cases := map[string][]byte{
		"11 bytes":         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"overflow 10th":    {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
		"non-minimal zero": {0x80, 0x00},
		"non-minimal one":  {0x81, 0x80, 0x00},
		"non-minimal 10th": {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadFrame(bytes.NewReader(in), 1<<20); !errors.Is(err, ErrBadVarint) {
				t.Fatalf("err = %v, want ErrBadVarint", err)
			}
		})
	}
	// The largest uint64 is a valid prefix, just too large.
	maxU64 := binary.AppendUvarint(nil, ^uint64(0))
	if _, err := ReadFrame(bytes.NewReader(maxU64), 1<<20); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("max uint64: err = %v, want ErrFrameTooLarge", err)
	}
}

// readUvarint must agree with the standard library on every canonical encoding.
func TestFrameVarintMatchesStdlib(t *testing.T) {
	for shift := 0; shift < 64; shift++ {
		for _, v := range []uint64{1<<shift - 1, 1 << shift, 1<<shift + 1} {
			enc := binary.AppendUvarint(nil, v)
			got, err := readUvarint(bytes.NewReader(enc))
			if err != nil || got != v {
				t.Fatalf("%d: got %d, %v", v, got, err)
			}
		}
	}
}

func TestFrameNegativeMax(t *testing.T) {
	if _, err := ReadFrame(bytes.NewReader([]byte{0}), -1); err == nil {
		t.Fatal("negative max accepted")
	}
}

func TestReadFrameIntoReusesBuffer(t *testing.T) {
	var in bytes.Buffer
	WriteFrame(&in, []byte("abc"))
	WriteFrame(&in, []byte("longer than eight"))
	r := bytes.NewReader(in.Bytes())
	buf := make([]byte, 8)
	got, err := ReadFrameInto(r, buf, 64)
	if err != nil || string(got) != "abc" || &got[0] != &buf[0] {
		t.Fatalf("fitting frame: %q, %v, aliases buf: %v", got, err, err == nil && &got[0] == &buf[0])
	}
	got, err = ReadFrameInto(r, buf, 64)
	if err != nil || string(got) != "longer than eight" {
		t.Fatalf("larger frame: %q, %v", got, err)
	}
	if _, err := ReadFrameInto(bytes.NewReader([]byte{9}), buf, 8); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("max still applies with a big enough buffer: err = %v", err)
	}
}
