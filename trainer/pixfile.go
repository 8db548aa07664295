package trainer

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// A pixel file keeps decoded image datasets (a train and a test set, say)
// in one compact file, so a node decodes its PNGs or gunzips its IDX files
// once, and every node process of a machine maps the same file: the pages
// are shared, and no process holds the pixels on its Go heap.
//
// Layout: the 8-byte magic, a little-endian uint32 header length, the
// JSON header, then per set its labels (N bytes) and pixels (N*Dim bytes)
// at the offsets the header gives. The file is a cache of its source:
// its name carries the source's hash, and a file that does not parse is
// rebuilt, never trusted: every set carries a CRC-32C of its bytes.
const pixMagic = "STPIX01\n"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxPixHeader caps the JSON header (label names are its bulk).
const maxPixHeader = 1 << 20

// PixMeta is what a pixel file records beside the pixels: the
// normalisation and the class names, the preprocessing a model needs.
type PixMeta struct {
	Mean   []float64 `json:"mean"`
	Std    []float64 `json:"std"`
	Labels []string  `json:"labels,omitempty"`
}

type pixHeader struct {
	PixMeta
	Sets []pixSet `json:"sets"`
}

type pixSet struct {
	Name    string `json:"name"`
	N       int    `json:"n"`
	Dim     int    `json:"dim"`
	Shape   []int  `json:"shape,omitempty"`
	Classes int    `json:"classes"`
	Off     int64  `json:"off"` // labels at Off, pixels at Off+N
	// CRC is the CRC-32C of the set's labels and pixels: a file torn by
	// a crash (it is not fsynced) reads as damaged and is rebuilt.
	CRC uint32 `json:"crc"`
}

// WritePixelFile writes sets (each with Pix) and meta to path, through a
// temporary file and a rename: processes racing to build the same cache
// each rename a complete file, and a mapping of the old one stays valid.
func WritePixelFile(path string, meta PixMeta, sets ...*Dataset) error {
	var hs []pixSet
	for _, d := range sets {
		if d.Pix == nil {
			return fmt.Errorf("pixel file: dataset %q has no pixel rows", d.Name)
		}
		crc := crc32.Update(crc32.Checksum(d.Y, castagnoli), castagnoli, d.Pix)
		hs = append(hs, pixSet{Name: d.Name, N: d.N, Dim: d.Dim, Shape: d.Shape, Classes: d.Classes, CRC: crc})
	}
	return writePixelFile(path, meta, hs, func(w io.Writer, i int) error {
		if _, err := w.Write(sets[i].Y); err != nil {
			return err
		}
		_, err := w.Write(sets[i].Pix)
		return err
	})
}

// writePixelFile writes a pixel file of sets (everything but their
// offsets filled in), body writing set i's labels and pixels, streamed
// (an image folder's are decoded image by image, never held whole).
func writePixelFile(path string, meta PixMeta, sets []pixSet, body func(w io.Writer, i int) error) (err error) {
	h := pixHeader{PixMeta: meta, Sets: sets}
	// The offsets depend on the header length, which depends on the
	// offsets' digits: fix the point by encoding until it stops moving.
	var js []byte
	for range 4 {
		if js, err = json.Marshal(h); err != nil {
			return err
		}
		off := int64(len(pixMagic) + 4 + len(js))
		for i, s := range sets {
			h.Sets[i].Off = off
			off += int64(s.N) * int64(1+s.Dim)
		}
	}
	if js, err = json.Marshal(h); err != nil {
		return err
	}
	if len(js) > maxPixHeader || len(sets) == 0 || h.Sets[0].Off != int64(len(pixMagic)+4+len(js)) {
		return errors.New("pixel file: header too large or unstable")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(pixMagic)
	binary.Write(w, binary.LittleEndian, uint32(len(js)))
	w.Write(js)
	for i := range sets {
		if err = body(w, i); err != nil {
			return err
		}
	}
	if err = w.Flush(); err != nil {
		return err
	}
	// No fsync: this is a cache, and the checksums catch a torn file.
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// MapPixelFile maps the pixel file at path read-only and returns its sets,
// whose Y and Pix point into the mapping (kept for the life of the
// process, with the file open for streamed reads), and its meta. Every field is checked against the file's size
// before a slice is cut; errors name the file and the fault.
func MapPixelFile(path string) ([]*Dataset, *PixMeta, error) {
	b, f, err := mapFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("pixel file %s: %w", path, err)
	}
	sets, meta, err := parsePixelFile(b)
	if err != nil {
		unmapFile(b)
		if f != nil {
			f.Close()
		}
		return nil, nil, fmt.Errorf("pixel file %s: %w", path, err)
	}
	if canAdvise {
		for _, d := range sets {
			d.mapping, d.src = b, f
		}
		// The checksums read every page: drop them, so a process starts
		// with none of the file resident and reads in what it uses.
		dropPages(b, 0, len(b))
	}
	return sets, meta, nil
}

func parsePixelFile(b []byte) ([]*Dataset, *PixMeta, error) {
	if len(b) < len(pixMagic)+4 || string(b[:len(pixMagic)]) != pixMagic {
		return nil, nil, errors.New("not a pixel file (bad magic)")
	}
	n := binary.LittleEndian.Uint32(b[len(pixMagic):])
	start := len(pixMagic) + 4
	if n > maxPixHeader || int(n) > len(b)-start {
		return nil, nil, fmt.Errorf("header length %d exceeds the file or %d bytes", n, maxPixHeader)
	}
	var h pixHeader
	if err := json.Unmarshal(b[start:start+int(n)], &h); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	norm := NewNorm(h.Mean, h.Std)
	if err := norm.Check(); err != nil {
		return nil, nil, err
	}
	if len(h.Sets) == 0 {
		return nil, nil, errors.New("no datasets")
	}
	var sets []*Dataset
	for _, s := range h.Sets {
		if s.N < 1 || s.Dim < 1 || s.Off < int64(start)+int64(n) || int64(s.N) > int64(len(b)) || int64(s.Dim) > int64(len(b)) ||
			s.Off+int64(s.N)*int64(1+s.Dim) > int64(len(b)) {
			return nil, nil, fmt.Errorf("set %q: %d rows of %d bytes at %d run past the file's %d bytes", s.Name, s.N, s.Dim, s.Off, len(b))
		}
		y := b[s.Off : s.Off+int64(s.N)]
		pix := b[s.Off+int64(s.N) : s.Off+int64(s.N)*int64(1+s.Dim)]
		if crc := crc32.Update(crc32.Checksum(y, castagnoli), castagnoli, pix); crc != s.CRC {
			return nil, nil, fmt.Errorf("set %q: checksum %08x, the header says %08x (a torn or altered file)", s.Name, crc, s.CRC)
		}
		d := &Dataset{Name: s.Name, Pix: pix, Norm: norm, Y: y, N: s.N, Dim: s.Dim, Shape: s.Shape, Classes: s.Classes, pixOff: int(s.Off) + s.N}
		if err := d.Validate(); err != nil {
			return nil, nil, err
		}
		sets = append(sets, d)
	}
	return sets, &h.PixMeta, nil
}
