package engine

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// MLP is a multilayer perceptron: fully connected layers with ReLU between
// them, softmax cross-entropy on the last. Parameters and gradients are
// flat, layer by layer W (in×out, row-major, y = x·W + b) then b (out),
// the layout of trainer's gorgonia MLP. Every buffer is allocated in
// NewMLP for up to Rows rows at once; Step and Forward allocate nothing.
// An MLP is not safe for concurrent use.
type MLP struct {
	sizes  []int
	rows   int
	offs   []int // flat offset of W_l at offs[2l], b_l at offs[2l+1]
	params []float32
	grads  []float32
	acts   [][]float32 // acts[l]: output of layer l (rows×sizes[l+1])
	dacts  [][]float32 // loss gradient at acts[l]
	mul    gemm        // the layers' matrix products
}

// NewMLP plans a network of the given widths (input, hidden..., classes)
// for at most rows rows per call.
func NewMLP(sizes []int, rows int) (*MLP, error) {
	if len(sizes) < 2 || rows < 1 {
		return nil, fmt.Errorf("engine: MLP needs ≥ 2 sizes and ≥ 1 row, got %v and %d", sizes, rows)
	}
	m := &MLP{sizes: append([]int(nil), sizes...), rows: rows, mul: kernels.Sgemm}
	n := 0
	for l := 0; l+1 < len(sizes); l++ {
		if sizes[l] < 1 || sizes[l+1] < 1 {
			return nil, fmt.Errorf("engine: MLP width %v: want ≥ 1", sizes)
		}
		m.offs = append(m.offs, n, n+sizes[l]*sizes[l+1])
		n += sizes[l]*sizes[l+1] + sizes[l+1]
		m.acts = append(m.acts, make([]float32, rows*sizes[l+1]))
		m.dacts = append(m.dacts, make([]float32, rows*sizes[l+1]))
	}
	m.offs = append(m.offs, n)
	m.params, m.grads = make([]float32, n), make([]float32, n)
	return m, nil
}

// UseBF16 makes the layers' matrix products take their inputs in
// bfloat16 (kernels.SgemmBF16): sums, parameters, gradients and the loss
// stay fp32. It reports false, changing nothing, on a CPU without bf16
// dot products, where they would be slower, not faster.
func (m *MLP) UseBF16() bool {
	if !kernels.HasBF16() {
		return false
	}
	m.mul = kernels.SgemmBF16
	return true
}

// Params is the flat parameter vector, which the caller reads and writes.
func (m *MLP) Params() []float32 { return m.params }

// Grads is the flat gradient of the mean loss of the last Step.
func (m *MLP) Grads() []float32 { return m.grads }

// Rows is the most rows Step and Forward take at once.
func (m *MLP) Rows() int { return m.rows }

func (m *MLP) layer(l int) (w, b, dw, db []float32) {
	lo, mid, hi := m.offs[2*l], m.offs[2*l+1], m.offs[2*l+2]
	return m.params[lo:mid], m.params[mid:hi], m.grads[lo:mid], m.grads[mid:hi]
}

// Forward computes the logits of rows rows of x (rows×sizes[0]); the
// result is valid until the next call.
func (m *MLP) Forward(x []float32, rows int) ([]float32, error) {
	if rows < 1 || rows > m.rows || len(x) < rows*m.sizes[0] {
		return nil, fmt.Errorf("engine: Forward of %d rows with %d values, want 1..%d rows of %d", rows, len(x), m.rows, m.sizes[0])
	}
	h := x
	last := len(m.sizes) - 2
	for l := 0; l <= last; l++ {
		w, b, _, _ := m.layer(l)
		denseForwardWith(m.mul, h, w, b, m.acts[l], rows, m.sizes[l], m.sizes[l+1], l < last)
		h = m.acts[l]
	}
	return h[:rows*m.sizes[last+1]], nil
}

// Step runs forward and backward on rows = len(y) rows of x and leaves
// the gradient of the mean cross-entropy in Grads. On error the
// gradient is zero.
func (m *MLP) Step(x []float32, y []uint8) (float32, error) {
	rows := len(y)
	if len(x) != rows*m.sizes[0] {
		return 0, fmt.Errorf("engine: Step got %d values for %d rows of %d", len(x), rows, m.sizes[0])
	}
	z, err := m.Forward(x, rows)
	if err != nil {
		return 0, err
	}
	last := len(m.sizes) - 2
	loss, err := softmaxCrossEntropy(z, m.dacts[last], y, rows, m.sizes[last+1])
	if err != nil {
		clear(m.grads)
		return 0, err
	}
	for l := last; l >= 0; l-- {
		w, _, dw, db := m.layer(l)
		in := x
		var dx []float32
		if l > 0 {
			in, dx = m.acts[l-1], m.dacts[l-1]
		}
		denseBackwardWith(m.mul, in, w, m.acts[l], m.dacts[l], dw, db, dx, rows, m.sizes[l], m.sizes[l+1], l < last)
	}
	return loss, nil
}

// Sizes returns the layer widths: input, hidden..., classes.
func (m *MLP) Sizes() []int { return append([]int(nil), m.sizes...) }
