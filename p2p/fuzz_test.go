package p2p

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzReadFrame feeds arbitrary bytes and limits to ReadFrame, frame after
// frame. It must never panic, never return more than max bytes, fail only
// with the documented errors, behave the same on a ByteReader, a plain
// Reader and through ReadFrameInto with a reused buffer, and every frame it accepts must re-encode to exactly the bytes it
// consumed (one canonical encoding per frame).
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{}, 16)
	f.Add([]byte{0x00}, 0)
	f.Add([]byte("\x05hello\x05world"), 5)
	f.Add([]byte("\x05hello"), 4)
	f.Add([]byte{0x80, 0x00}, 1<<20)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 1<<20)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		fast := bytes.NewReader(data)
		slow := iotest.OneByteReader(bytes.NewReader(data))
		reuse := bytes.NewReader(data)
		buf := make([]byte, 16)
		off := 0
		for {
			got, err := ReadFrame(fast, max)
			got2, err2 := ReadFrame(slow, max)
			if !bytes.Equal(got, got2) || (err == nil) != (err2 == nil) {
				t.Fatalf("ByteReader gave %d bytes, %v; plain Reader gave %d bytes, %v", len(got), err, len(got2), err2)
			}
			got3, err3 := ReadFrameInto(reuse, buf, max)
			if !bytes.Equal(got, got3) || (err == nil) != (err3 == nil) {
				t.Fatalf("ReadFrame gave %d bytes, %v; ReadFrameInto gave %d bytes, %v", len(got), err, len(got3), err3)
			}
			if err != nil {
				known := max < 0 || errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrBadVarint) ||
					err == io.EOF || err == io.ErrUnexpectedEOF
				if !known {
					t.Fatalf("undocumented error %v", err)
				}
				if err == io.EOF && off != len(data) {
					t.Fatalf("io.EOF with %d bytes left", len(data)-off)
				}
				return
			}
			if len(got) > max {
				t.Fatalf("frame of %d bytes exceeds max %d", len(got), max)
			}
			var enc bytes.Buffer
			if err := WriteFrame(&enc, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc.Bytes(), data[off:off+enc.Len()]) {
				t.Fatalf("frame at offset %d does not re-encode to its input", off)
			}
			off += enc.Len()
		}
	})
}
