package trainer

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
)

// Dataset is a dense classification set: row i is X[i*Dim:(i+1)*Dim], or,
// for images, the raw bytes Pix[i*Dim:(i+1)*Dim] normalised on the fly by
// Norm, with label Y[i] in 0..Classes-1. Exactly one of X and Pix is set.
// Pix may be a read-only memory map (MapPixelFile) shared by every process
// of the machine: never write to it.
type Dataset struct {
	Name    string
	X       []float32 // N*Dim row-major; nil when Pix holds the rows
	Pix     []uint8   // N*Dim raw pixels (channel-major within a row); nil for X
	Norm    *Norm     // how Pix becomes model input; required with Pix
	Y       []uint8
	N, Dim  int
	Classes int
	// Shape is a row's image layout, channels×height×width with product
	// Dim, for models that need it (the CNN); nil for non-image data.
	Shape []int
	// Vocab is the vocabulary size of token data (rows of token ids; 0 for
	// other data). MLM marks masked-language-model rows: Dim/2 input ids,
	// then Dim/2 targets (−1: not predicted); their labels are unused.
	Vocab int
	MLM   bool
	// Labels names the classes (optional); Resized says image rows were
	// scaled or cropped from pictures of other sizes.
	Labels  []string
	Resized bool
	// mapping is the pixel file Pix lies in, at byte pixOff of it and of
	// src, the file itself; nil when Pix is on the heap (or this build
	// cannot drop mapped pages). behind makes Rows read through src, not
	// the mapping (StreamRows).
	mapping []byte
	src     *os.File
	pixOff  int
	behind  bool
}

// MNIST normalisation (the usual mean and standard deviation of the training
// pixels after scaling to [0,1]).
const (
	MNISTMean = 0.1307
	MNISTStd  = 0.3081
)

// MNISTNorm is the normalisation of MNIST's one grey channel.
func MNISTNorm() *Norm { return NewNorm([]float64{MNISTMean}, []float64{MNISTStd}) }

// newPixelDataset builds a Dataset from raw 0..255 pixels and labels; the
// caller has already checked len(pix) == len(labels)*dim. shape is the
// image layout (nil: unknown, one channel). The pixels stay bytes (a
// quarter of float32's memory) and are normalised as rows are read.
func newPixelDataset(name string, pix, labels []byte, dim, classes int, shape []int) *Dataset {
	return &Dataset{Name: name, Pix: pix, Norm: MNISTNorm(), Y: labels, N: len(labels), Dim: dim, Classes: classes, Shape: shape, Labels: mnistLabels}
}

// squareImage is the layout of a row of dim pixels that is a square
// one-channel image (CSV files carry no shape), or nil.
func squareImage(dim int) []int {
	s := int(math.Sqrt(float64(dim)))
	for s*s > dim {
		s--
	}
	for (s+1)*(s+1) <= dim {
		s++
	}
	if s*s != dim {
		return nil
	}
	return []int{1, s, s}
}

// Validate checks that the shape fields agree with the slices and that every
// label is in range; use it on a Dataset built by hand.
func (d *Dataset) Validate() error {
	switch {
	case d == nil:
		return errors.New("dataset: nil")
	case d.N < 1 || d.Dim < 1:
		return fmt.Errorf("dataset %q: N=%d Dim=%d, both must be >= 1", d.Name, d.N, d.Dim)
	case d.Classes < 2 || d.Classes > 256:
		return fmt.Errorf("dataset %q: Classes=%d, want 2..256", d.Name, d.Classes)
	case len(d.Y) != d.N:
		return fmt.Errorf("dataset %q: len(Y)=%d, want N=%d", d.Name, len(d.Y), d.N)
	case (d.X == nil) == (d.Pix == nil):
		return fmt.Errorf("dataset %q: want exactly one of X (floats) and Pix (bytes), have X=%v Pix=%v", d.Name, d.X != nil, d.Pix != nil)
	case d.X != nil && len(d.X) != d.N*d.Dim:
		return fmt.Errorf("dataset %q: len(X)=%d, want N*Dim=%d", d.Name, len(d.X), d.N*d.Dim)
	case d.Pix != nil && len(d.Pix) != d.N*d.Dim:
		return fmt.Errorf("dataset %q: len(Pix)=%d, want N*Dim=%d", d.Name, len(d.Pix), d.N*d.Dim)
	case d.Pix != nil && d.Norm == nil:
		return fmt.Errorf("dataset %q: pixel rows without a normalisation (Norm)", d.Name)
	case d.Pix != nil && d.Norm.Channels() != d.channels():
		return fmt.Errorf("dataset %q: normalisation for %d channels, rows have %d", d.Name, d.Norm.Channels(), d.channels())
	case d.Shape != nil && (len(d.Shape) != 3 || d.Shape[0] < 1 || d.Shape[1] < 1 || d.Shape[2] < 1 || d.Shape[0]*d.Shape[1]*d.Shape[2] != d.Dim):
		return fmt.Errorf("dataset %q: image shape %v does not multiply out to Dim=%d", d.Name, d.Shape, d.Dim)
	}
	for i, y := range d.Y {
		if int(y) >= d.Classes {
			return fmt.Errorf("dataset %q: row %d: label %d out of range 0..%d", d.Name, i, y, d.Classes-1)
		}
	}
	return nil
}

// channels is the number of image channels of a row (1 without a shape).
func (d *Dataset) channels() int {
	if d.Shape == nil {
		return 1
	}
	return d.Shape[0]
}

// Rows returns rows lo..lo+n-1 as model input, row-major: a slice of X
// itself (no copy), or pixels normalised into buf (len >= n*Dim).
func (d *Dataset) Rows(lo, n int, buf []float32) []float32 {
	if d.X != nil {
		return d.X[lo*d.Dim : (lo+n)*d.Dim]
	}
	out := buf[:n*d.Dim]
	pix := d.Pix[lo*d.Dim : (lo+n)*d.Dim]
	if d.behind {
		pix = d.readPix(make([]uint8, len(pix)), lo*d.Dim)
	}
	for r := range n {
		d.Norm.Apply(out[r*d.Dim:(r+1)*d.Dim], pix[r*d.Dim:(r+1)*d.Dim])
	}
	return out
}

// readPix reads Pix[off:off+len(dst)] from the file into dst: the bytes
// are the mapping's, but only dst holds them. Should the read fail (a
// disk error), they come through the mapping instead.
func (d *Dataset) readPix(dst []uint8, off int) []uint8 {
	if _, err := d.src.ReadAt(dst, int64(d.pixOff+off)); err != nil {
		copy(dst, d.Pix[off:])
	}
	return dst
}

// rowBytes is the size of a row as stored: what the block order cuts.
func (d *Dataset) rowBytes() int {
	if d.Pix != nil {
		return d.Dim
	}
	return 4 * d.Dim
}

// Mapped says whether the pixel rows lie in a memory-mapped pixel file
// whose pages this process can drop: what a memory budget needs.
func (d *Dataset) Mapped() bool { return d.mapping != nil }

// StreamRows makes Rows read the rows it is asked for from the pixel file
// into a buffer of their own instead of through the mapping, so a pass
// over the set (an evaluation) keeps one chunk of it resident, and moves
// the labels (one byte a row) to the heap. It fails on a set that is not
// mapped. The rows read do not change.
func (d *Dataset) StreamRows() error {
	if !d.Mapped() {
		return fmt.Errorf("dataset %q is not mapped from a pixel file, so it cannot be streamed", d.Name)
	}
	if !d.behind {
		d.Y = slices.Clone(d.Y)
		d.behind = true
		d.drop()
	}
	return nil
}

// drop drops the set's pages (labels and pixels) from this process's
// resident set: they stay in the page cache for a later read and for the
// other processes mapping the file. A no-op on the heap.
func (d *Dataset) drop() {
	if d.mapping != nil {
		dropPages(d.mapping, d.pixOff-d.N, d.pixOff+len(d.Pix))
	}
}

// copyRow writes row i as model input into dst (len Dim).
func (d *Dataset) copyRow(dst []float32, i int) {
	if d.X != nil {
		copy(dst, d.X[i*d.Dim:(i+1)*d.Dim])
		return
	}
	d.Norm.Apply(dst, d.pixRow(i))
}

func (d *Dataset) pixRow(i int) []uint8 { return d.Pix[i*d.Dim : (i+1)*d.Dim] }
