package trainer

import (
	"errors"
	"fmt"
	"math"
)

// Dataset is a dense classification set held in memory: row i is
// X[i*Dim:(i+1)*Dim] with label Y[i] in 0..Classes-1.
type Dataset struct {
	Name    string
	X       []float32 // N*Dim row-major
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
}

// MNIST normalisation (the usual mean and standard deviation of the training
// pixels after scaling to [0,1]).
const (
	MNISTMean = 0.1307
	MNISTStd  = 0.3081
)

// pixelTable maps a raw byte to its normalised float32. A table, computed
// once in float64 and rounded once, gives every peer the same bits.
var pixelTable = func() (t [256]float32) {
	for i := range t {
		t[i] = float32((float64(i)/255 - MNISTMean) / MNISTStd)
	}
	return t
}()

// newPixelDataset builds a Dataset from raw 0..255 pixels and labels; the
// caller has already checked len(pix) == len(labels)*dim.
// shape is the image layout (nil: unknown).
func newPixelDataset(name string, pix, labels []byte, dim, classes int, shape []int) *Dataset {
	x := make([]float32, len(pix))
	for i, p := range pix {
		x[i] = pixelTable[p]
	}
	return &Dataset{Name: name, X: x, Y: labels, N: len(labels), Dim: dim, Classes: classes, Shape: shape}
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
	case len(d.X) != d.N*d.Dim:
		return fmt.Errorf("dataset %q: len(X)=%d, want N*Dim=%d", d.Name, len(d.X), d.N*d.Dim)
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

// row returns row i of X (no copy).
func (d *Dataset) row(i int) []float32 { return d.X[i*d.Dim : (i+1)*d.Dim] }
