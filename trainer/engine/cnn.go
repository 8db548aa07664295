package engine

import (
	"fmt"
	"math"
	"sync"

	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// CNN is a convolutional classifier: blocks of a k×k "same" convolution
// with bias, ReLU and 2×2 max pooling, then fully connected layers with
// ReLU between them and softmax cross-entropy on the last. Parameters and
// gradients are flat, in the layout of trainer's gorgonia CNN: for each
// block its weight (out×in×k×k) then bias (out), then for each dense layer
// W (in×out, y = x·W + b) then b (out). Inputs are rows of c×h×w values
// (NCHW). Every buffer is allocated in NewCNN for up to Rows rows at once;
// Step and Forward allocate nothing beyond sgemm's own workspace. A CNN is
// not safe for concurrent use.
type CNN struct {
	k      int
	blocks []convBlock
	sizes  []int // dense widths: flattened last block, hidden..., classes
	rows   int
	offs   []int // flat offset of block i's weight at offs[2i], bias at offs[2i+1]; dense layers follow
	params []float32
	grads  []float32
	acts   [][]float32 // dense layer l's output (rows×sizes[l+1])
	dacts  [][]float32 // loss gradient at acts[l]
	mul    gemm        // the dense layers' matrix products (nil: kernels.Sgemm)
	// shards split a batch of at least 2·shardRows rows in two halves,
	// each stepped on its own thread with serial loops and products:
	// the CNN's products are many and small, and splitting each across
	// threads cost more than it saved (two threads were slower than
	// one). They share params; Step sums their gradients. nil: too few
	// rows, or this is a shard.
	shards *[2]*CNN
	halves shardLoop
	wg     sync.WaitGroup
}

// shardRows is the fewest rows a shard takes.
const shardRows = 4

// shardLoop steps shard i over its half of the batch, for parallel.
type shardLoop struct {
	shards *[2]*CNN
	x      [2][]float32
	y      [2][]uint8
	loss   [2]float32
	err    [2]error
}

func (l *shardLoop) run(lo, hi int) {
	for i := lo; i < hi; i++ {
		l.loss[i], l.err[i] = l.shards[i].step(l.x[i], l.y[i])
	}
}

// UseBF16 makes the convolutions' and dense layers' matrix products take
// their inputs in bfloat16, as MLP.UseBF16 does; false, changing
// nothing, on a CPU without bf16 dot products.
func (m *CNN) UseBF16() bool {
	if !kernels.HasBF16() {
		return false
	}
	m.mul = kernels.SgemmBF16
	for i := range m.blocks {
		m.blocks[i].conv.mul = kernels.SgemmBF16
	}
	if m.shards != nil {
		for _, sh := range m.shards {
			sh.setGemm(kernels.SgemmBF16Serial)
		}
	}
	return true
}

// setGemm makes every matrix product of m mul.
func (m *CNN) setGemm(mul gemm) {
	m.mul = mul
	for i := range m.blocks {
		m.blocks[i].conv.mul = mul
	}
}

// dense is the dense layers' matrix product.
func (m *CNN) dense() gemm {
	if m.mul == nil {
		return kernels.Sgemm
	}
	return m.mul
}

// convBlock is one conv–ReLU–pool stage and its buffers.
type convBlock struct {
	c, h, w, o int       // input channels, height, width; output channels
	group      int       // images per im2col buffer
	col        []float32 // patches of a group, (c·k·k)×(group·h·w); their gradient in the backward pass
	z          []float32 // convolution output, o×rows×h×w; its gradient in the backward pass
	out, dout  []float32 // pooled output rows×o×(h/2)×(w/2), and the loss gradient there
	idx        []int32   // for each pooled value, its maximum's index in z
	conv       convLoops // the loops split across threads, planned here so a split allocates nothing
	pool       poolLoop
}

// NewCNN plans a network for images of shape (channels, height, width),
// conv blocks of the given output channels with k×k kernels (k odd), and
// dense layers of widths hidden..., classes, for at most rows rows per call.
func NewCNN(shape []int, channels []int, k int, hidden []int, classes, rows int) (*CNN, error) {
	m, err := newCNN(shape, channels, k, hidden, classes, rows)
	if err != nil || rows < 2*shardRows {
		return m, err
	}
	m.shards = new([2]*CNN)
	for i := range m.shards {
		sh, err := newCNN(shape, channels, k, hidden, classes, (rows+1)/2)
		if err != nil {
			return nil, err
		}
		sh.params = m.params
		sh.setGemm(kernels.SgemmSerial)
		for j := range sh.blocks {
			sh.blocks[j].conv.serial = true
			sh.blocks[j].pool.serial = true
		}
		m.shards[i] = sh
	}
	return m, nil
}

// newCNN is NewCNN without shards.
func newCNN(shape []int, channels []int, k int, hidden []int, classes, rows int) (*CNN, error) {
	if len(shape) != 3 || shape[0] < 1 || shape[1] < 1 || shape[2] < 1 {
		return nil, fmt.Errorf("engine: CNN image shape %v, want channels,height,width ≥ 1", shape)
	}
	if k < 1 || k%2 == 0 {
		return nil, fmt.Errorf("engine: CNN kernel %d, want odd ≥ 1", k)
	}
	if len(channels) == 0 || rows < 1 || classes < 1 {
		return nil, fmt.Errorf("engine: CNN needs ≥ 1 conv block, ≥ 1 row and ≥ 1 class, got %v, %d and %d", channels, rows, classes)
	}
	m := &CNN{k: k, rows: rows}
	n := 0
	param := func(size int) { m.offs = append(m.offs, n); n += size }
	c, h, w := shape[0], shape[1], shape[2]
	for i, o := range channels {
		if o < 1 {
			return nil, fmt.Errorf("engine: CNN block %d has %d channels, want ≥ 1", i, o)
		}
		if h < 2 || w < 2 {
			return nil, fmt.Errorf("engine: a %d×%d image is too small for %d conv–pool blocks (each halves it)", shape[1], shape[2], len(channels))
		}
		// idx holds int32 indices into z.
		if int64(rows)*int64(h*w)*int64(max(c*k*k, o)) > math.MaxInt32 {
			return nil, fmt.Errorf("engine: CNN block %d needs more than %d values of patches: lower the rows", i, math.MaxInt32)
		}
		pooled := rows * o * (h / 2) * (w / 2)
		g := convGroup(rows, c, h, w, k)
		m.blocks = append(m.blocks, convBlock{c: c, h: h, w: w, o: o, group: g,
			col: make([]float32, c*k*k*g*h*w), z: make([]float32, o*rows*h*w),
			out: make([]float32, pooled), dout: make([]float32, pooled), idx: make([]int32, pooled)})
		param(o * c * k * k)
		param(o)
		c, h, w = o, h/2, w/2
	}
	m.sizes = append(append([]int{c * h * w}, hidden...), classes)
	for l := 0; l+1 < len(m.sizes); l++ {
		if m.sizes[l+1] < 1 {
			return nil, fmt.Errorf("engine: CNN dense widths %v: want ≥ 1", m.sizes[1:])
		}
		param(m.sizes[l] * m.sizes[l+1])
		param(m.sizes[l+1])
		m.acts = append(m.acts, make([]float32, rows*m.sizes[l+1]))
		m.dacts = append(m.dacts, make([]float32, rows*m.sizes[l+1]))
	}
	m.offs = append(m.offs, n)
	m.params, m.grads = make([]float32, n), make([]float32, n)
	return m, nil
}

// Params is the flat parameter vector, which the caller reads and writes.
func (m *CNN) Params() []float32 { return m.params }

// Grads is the flat gradient of the mean loss of the last Step.
func (m *CNN) Grads() []float32 { return m.grads }

// Rows is the most rows Step and Forward take at once.
func (m *CNN) Rows() int { return m.rows }

// Dim is the number of values in one input row.
func (m *CNN) Dim() int { b := m.blocks[0]; return b.c * b.h * b.w }

// Classes is the width of the logits.
func (m *CNN) Classes() int { return m.sizes[len(m.sizes)-1] }

// tensor returns parameter tensor i and its gradient.
func (m *CNN) tensor(i int) (p, g []float32) {
	lo, hi := m.offs[i], m.offs[i+1]
	return m.params[lo:hi], m.grads[lo:hi]
}

// Forward computes the logits of rows rows of x (rows×Dim); the result
// is valid until the next call.
func (m *CNN) Forward(x []float32, rows int) ([]float32, error) {
	if rows < 1 || rows > m.rows || len(x) < rows*m.Dim() {
		return nil, fmt.Errorf("engine: Forward of %d rows with %d values, want 1..%d rows of %d", rows, len(x), m.rows, m.Dim())
	}
	h := x
	for i := range m.blocks {
		b := &m.blocks[i]
		w, _ := m.tensor(2 * i)
		bias, _ := m.tensor(2*i + 1)
		convForward(&b.conv, h, w, b.col, b.z, rows, b.c, b.h, b.w, m.k, b.o, b.group)
		b.pool.pool(b.z, bias, b.out, b.idx, rows, b.o, b.h, b.w)
		h = b.out
	}
	last := len(m.sizes) - 2
	for l := 0; l <= last; l++ {
		w, _ := m.tensor(2 * (len(m.blocks) + l))
		bias, _ := m.tensor(2*(len(m.blocks)+l) + 1)
		denseForwardWith(m.dense(), h, w, bias, m.acts[l], rows, m.sizes[l], m.sizes[l+1], l < last)
		h = m.acts[l]
	}
	return h[:rows*m.sizes[last+1]], nil
}

// Step runs forward and backward on rows = len(y) rows of x and leaves
// the gradient of the mean cross-entropy in Grads. On error the
// gradient is zero.
func (m *CNN) Step(x []float32, y []uint8) (float32, error) {
	rows := len(y)
	if len(x) != rows*m.Dim() {
		return 0, fmt.Errorf("engine: Step got %d values for %d rows of %d", len(x), rows, m.Dim())
	}
	if m.shards == nil || rows < 2*shardRows || rows > m.rows {
		return m.step(x, y)
	}
	// The same two halves on one thread or two, summed in one order:
	// the gradient does not depend on the thread count.
	h, d := (rows+1)/2, m.Dim()
	l := &m.halves
	*l = shardLoop{shards: m.shards, x: [2][]float32{x[:h*d], x[h*d:]}, y: [2][]uint8{y[:h], y[h:]}}
	parallel(2, 1, l, &m.wg)
	loss, errs := l.loss, l.err
	*l = shardLoop{} // hold no batch
	for _, err := range errs {
		if err != nil {
			clear(m.grads)
			return 0, err
		}
	}
	w0, w1 := float32(h)/float32(rows), float32(rows-h)/float32(rows)
	g0, g1 := m.shards[0].grads, m.shards[1].grads
	for i := range m.grads {
		m.grads[i] = float32(w0*g0[i]) + float32(w1*g1[i])
	}
	return float32(w0*loss[0]) + float32(w1*loss[1]), nil
}

// step is Step on this CNN's own buffers, unsharded.
func (m *CNN) step(x []float32, y []uint8) (float32, error) {
	rows := len(y)
	z, err := m.Forward(x, rows)
	if err != nil {
		clear(m.grads)
		return 0, err
	}
	last := len(m.sizes) - 2
	loss, err := softmaxCrossEntropy(z, m.dacts[last], y, rows, m.sizes[last+1])
	if err != nil {
		clear(m.grads)
		return 0, err
	}
	nb := len(m.blocks)
	for l := last; l >= 0; l-- {
		w, dw := m.tensor(2 * (nb + l))
		_, db := m.tensor(2*(nb+l) + 1)
		in, dx := m.blocks[nb-1].out, m.blocks[nb-1].dout
		if l > 0 {
			in, dx = m.acts[l-1], m.dacts[l-1]
		}
		denseBackwardWith(m.dense(), in, w, m.acts[l], m.dacts[l], dw, db, dx, rows, m.sizes[l], m.sizes[l+1], l < last)
	}
	for i := nb - 1; i >= 0; i-- {
		b := &m.blocks[i]
		w, dw := m.tensor(2 * i)
		_, db := m.tensor(2*i + 1)
		b.pool.unpool(b.out, b.dout, b.idx, b.z, db, rows, b.o, b.h, b.w)
		in, dx := x, []float32(nil)
		if i > 0 {
			in, dx = m.blocks[i-1].out, m.blocks[i-1].dout
		}
		convBackward(&b.conv, in, w, b.col, b.z, dw, dx, rows, b.c, b.h, b.w, m.k, b.o, b.group)
	}
	return loss, nil
}
