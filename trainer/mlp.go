package trainer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/swarmtrain/swarmtrain/compression"
)

// Caps that keep a hostile or mistyped config from allocating without bound.
const (
	maxBatch     = 1 << 16
	maxWidth     = 1 << 16
	maxLayers    = 64
	maxNumParams = 1 << 28 // 1 GiB of float32
)

// ModelConfig describes an MLP. All peers of a run must use the same one.
type ModelConfig struct {
	Hidden []int  // widths of the ReLU hidden layers, e.g. {256}; empty means softmax regression
	Batch  int    // rows per ComputeGradients call; the graph is built for exactly this many (1..65536)
	Seed   uint64 // weight initialisation; equal seeds give bit-identical initial parameters
}

// Validate checks the fields against their allowed ranges.
func (c ModelConfig) Validate() error {
	if c.Batch < 1 || c.Batch > maxBatch {
		return fmt.Errorf("model: Batch=%d, want 1..%d", c.Batch, maxBatch)
	}
	if len(c.Hidden) > maxLayers {
		return fmt.Errorf("model: %d hidden layers, want at most %d", len(c.Hidden), maxLayers)
	}
	for i, w := range c.Hidden {
		if w < 1 || w > maxWidth {
			return fmt.Errorf("model: Hidden[%d]=%d, want 1..%d", i, w, maxWidth)
		}
	}
	return nil
}

// Model is an MLP (ReLU hidden layers, log-softmax cross-entropy) whose
// forward and backward passes run as a gorgonia TapeMachine. Parameters and
// gradients are exchanged as flat float32 vectors ordered layer by layer,
// each layer's W (in×out, row-major, y = x·W + b) followed by its b (out).
// A Model is not safe for concurrent use; build one per goroutine.
type Model struct {
	cfg    ModelConfig
	sizes  []int // input, hidden..., classes
	offs   []int // flat offset of each param node; offs[len(params)] = n
	n      int
	g      *G.ExprGraph
	x, y   *G.Node
	xv, yv *tensor.Dense // input buffers, refilled in place per batch
	params []*G.Node     // W0, b0, W1, b1, ...
	cost   G.Value
	vm     G.VM
	grad   []float32 // last mean gradient, flat
	flat   []float32 // scratch for Evaluate
}

// NewMLP builds the graph for inputDim → cfg.Hidden → classes with weights
// drawn from a PCG seeded by cfg.Seed: He-uniform for ReLU layers,
// Glorot-uniform for the output layer, zero biases. gorgonia's own
// initialisers seed from the clock, so they are never used.
func NewMLP(cfg ModelConfig, inputDim, classes int) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if inputDim < 1 || inputDim > maxWidth {
		return nil, fmt.Errorf("model: inputDim=%d, want 1..%d", inputDim, maxWidth)
	}
	if classes < 2 || classes > 256 {
		return nil, fmt.Errorf("model: classes=%d, want 2..256 (labels are uint8)", classes)
	}
	m := &Model{cfg: cfg}
	m.cfg.Hidden = append([]int(nil), cfg.Hidden...)
	m.sizes = append(append([]int{inputDim}, cfg.Hidden...), classes)
	for l := 0; l+1 < len(m.sizes); l++ {
		m.offs = append(m.offs, m.n)
		m.n += m.sizes[l] * m.sizes[l+1]
		m.offs = append(m.offs, m.n)
		m.n += m.sizes[l+1]
		if m.n > maxNumParams {
			return nil, fmt.Errorf("model: more than %d parameters", maxNumParams)
		}
	}
	m.offs = append(m.offs, m.n)
	init := initParams(m.sizes, cfg.Seed, m.n)
	if err := m.build(init); err != nil {
		return nil, fmt.Errorf("model: building graph: %w", err)
	}
	m.grad = make([]float32, m.n)
	m.flat = make([]float32, m.n)
	return m, nil
}

// initParams draws the initial flat parameter vector. Only IEEE-exact
// operations (no fusable multiply-add) touch the random numbers, so the
// result is the same on every architecture.
func initParams(sizes []int, seed uint64, n int) []float32 {
	src := rand.NewPCG(seed, 0x696e6974) // "init"
	p := make([]float32, 0, n)
	for l := 0; l+1 < len(sizes); l++ {
		in, out := sizes[l], sizes[l+1]
		limit := math.Sqrt(6 / float64(in)) // He-uniform: Var = 2/in
		if l+2 == len(sizes) {
			limit = math.Sqrt(6 / float64(in+out)) // Glorot-uniform for the softmax layer
		}
		for range in * out {
			u := float64(src.Uint64()>>11) * 0x1p-53 // [0,1), exact
			p = append(p, float32((2*u-1)*limit))
		}
		p = append(p, make([]float32, out)...)
	}
	return p
}

func (m *Model) build(init []float32) (err error) {
	defer func() { // gorgonia reports some shape errors by panicking
		if r := recover(); r != nil {
			err = fmt.Errorf("gorgonia panic: %v", r)
		}
	}()
	B, classes := m.cfg.Batch, m.sizes[len(m.sizes)-1]
	g := G.NewGraph()
	m.g = g
	m.xv = tensor.New(tensor.WithShape(B, m.sizes[0]), tensor.Of(tensor.Float32))
	m.yv = tensor.New(tensor.WithShape(B, classes), tensor.Of(tensor.Float32))
	m.x = G.NewMatrix(g, tensor.Float32, G.WithShape(B, m.sizes[0]), G.WithName("x"), G.WithValue(m.xv))
	m.y = G.NewMatrix(g, tensor.Float32, G.WithShape(B, classes), G.WithName("y"), G.WithValue(m.yv))

	h := m.x
	var z *G.Node
	for l := 0; l+1 < len(m.sizes); l++ {
		in, out := m.sizes[l], m.sizes[l+1]
		wOff, bOff := m.offs[2*l], m.offs[2*l+1]
		wv := tensor.New(tensor.WithShape(in, out), tensor.WithBacking(append([]float32(nil), init[wOff:bOff]...)))
		bv := tensor.New(tensor.WithShape(1, out), tensor.WithBacking(append([]float32(nil), init[bOff:bOff+out]...)))
		w := G.NewMatrix(g, tensor.Float32, G.WithShape(in, out), G.WithName(fmt.Sprintf("W%d", l)), G.WithValue(wv))
		b := G.NewMatrix(g, tensor.Float32, G.WithShape(1, out), G.WithName(fmt.Sprintf("b%d", l)), G.WithValue(bv))
		m.params = append(m.params, w, b)
		if z, err = G.Mul(h, w); err != nil {
			return err
		}
		if z, err = G.BroadcastAdd(z, b, nil, []byte{0}); err != nil {
			return err
		}
		if l+2 < len(m.sizes) {
			if h, err = G.Rectify(z); err != nil {
				return err
			}
		}
	}
	// Mean over the batch of -Σ_k y_k·log softmax(z)_k.
	logp, err := G.LogSoftMax(z)
	if err != nil {
		return err
	}
	prod, err := G.HadamardProd(m.y, logp)
	if err != nil {
		return err
	}
	rowSum, err := G.Sum(prod, 1)
	if err != nil {
		return err
	}
	mean, err := G.Mean(rowSum)
	if err != nil {
		return err
	}
	cost, err := G.Neg(mean)
	if err != nil {
		return err
	}
	read := G.Read(cost, &m.cost)
	grads, err := G.Grad(cost, m.params...)
	if err != nil {
		return err
	}
	// Compile only what the loss and the parameter gradients need. The
	// symbolic backward also builds d(loss)/dx, which nobody reads; on the
	// full graph the tape would run that B×in×hidden matmul every step.
	sub := g.SubgraphRoots(append(grads, read)...)
	m.vm = G.NewTapeMachine(sub, G.BindDualValues(m.params...))
	return nil
}

// Config returns the model's configuration.
func (m *Model) Config() ModelConfig {
	c := m.cfg
	c.Hidden = append([]int(nil), c.Hidden...)
	return c
}

// Sizes returns the layer widths: input, hidden..., classes.
func (m *Model) Sizes() []int { return append([]int(nil), m.sizes...) }

// Tensor is one named tensor of the flat parameter vector.
type Tensor struct {
	Name  string
	Shape []int // row-major
}

// Size is the tensor's number of values.
func (t Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Tensors lists the parameter tensors in the order of the flat vector:
// per layer the weight matrix (inputs × outputs), then the bias.
func (m *Model) Tensors() []Tensor {
	var out []Tensor
	for l := 0; l+1 < len(m.sizes); l++ {
		out = append(out,
			Tensor{Name: fmt.Sprintf("layers.%d.weight", l), Shape: []int{m.sizes[l], m.sizes[l+1]}},
			Tensor{Name: fmt.Sprintf("layers.%d.bias", l), Shape: []int{m.sizes[l+1]}})
	}
	return out
}

// NumParams is the length of the flat parameter and gradient vectors.
func (m *Model) NumParams() int { return m.n }

// ReadParams copies the parameters into dst, which must have length
// NumParams (it panics otherwise: a wrong length is a bug in the caller).
func (m *Model) ReadParams(dst []float32) {
	m.mustLen("ReadParams", len(dst))
	for i, p := range m.params {
		copy(dst[m.offs[i]:m.offs[i+1]], p.Value().Data().([]float32))
	}
}

// WriteParams replaces the parameters with src. It rejects a wrong length
// or a NaN/Inf (parameters may come from the network) and then changes
// nothing.
func (m *Model) WriteParams(src []float32) error {
	if len(src) != m.n {
		return fmt.Errorf("model: WriteParams got %d values, want %d", len(src), m.n)
	}
	if i := compression.FirstNonFinite(src); i >= 0 {
		return fmt.Errorf("model: WriteParams: value %d is %v", i, src[i])
	}
	for i, p := range m.params {
		copy(p.Value().Data().([]float32), src[m.offs[i]:m.offs[i+1]])
	}
	return nil
}

// ComputeGradients runs forward and backward on one batch (len(y) ==
// Batch, len(x) == Batch*inputDim) and keeps the gradient of the mean loss
// for AddGrads. It returns the mean cross-entropy loss, NaN or Inf included:
// the caller decides whether to contribute such a step. Invalid input
// changes nothing; if the run itself fails, the kept gradient is zero.
func (m *Model) ComputeGradients(x []float32, y []uint8) (loss float32, err error) {
	B, in, classes := m.cfg.Batch, m.sizes[0], m.sizes[len(m.sizes)-1]
	if len(y) != B || len(x) != B*in {
		return 0, fmt.Errorf("model: batch has len(x)=%d len(y)=%d, want %d and %d", len(x), len(y), B*in, B)
	}
	yd := m.yv.Data().([]float32)
	clear(yd)
	for i, c := range y {
		if int(c) >= classes {
			return 0, fmt.Errorf("model: label %d at row %d out of range 0..%d", c, i, classes-1)
		}
		yd[i*classes+int(c)] = 1
	}
	copy(m.xv.Data().([]float32), x)

	defer func() {
		m.vm.Reset()
		m.zeroGrads()
		if r := recover(); r != nil {
			err = fmt.Errorf("model: gorgonia panic: %v", r)
		}
		if err != nil {
			clear(m.grad)
		}
	}()
	if err := G.Let(m.x, m.xv); err != nil {
		return 0, err
	}
	if err := G.Let(m.y, m.yv); err != nil {
		return 0, err
	}
	if err := m.vm.RunAll(); err != nil {
		return 0, fmt.Errorf("model: forward/backward: %w", err)
	}
	for i, p := range m.params {
		gv, err := p.Grad()
		if err != nil {
			return 0, fmt.Errorf("model: gradient of %s: %w", p.Name(), err)
		}
		copy(m.grad[m.offs[i]:m.offs[i+1]], gv.Data().([]float32))
	}
	v, ok := m.cost.Data().(float32)
	if !ok {
		return 0, errors.New("model: loss is not a float32 scalar")
	}
	return v, nil
}

// zeroGrads clears the graph's gradient buffers: the tape machine adds
// into them on every run (gorgonia's solvers clear them in Step, and we use
// none).
func (m *Model) zeroGrads() {
	for _, p := range m.params {
		if gv, err := p.Grad(); err == nil {
			clear(gv.Data().([]float32))
		}
	}
}

// AddGrads adds scale times the last computed mean gradient into dst
// (length NumParams; it panics otherwise). Before the first
// ComputeGradients the gradient is zero. Each product is rounded
// explicitly so that no FMA fusion changes the bits across architectures.
func (m *Model) AddGrads(dst []float32, scale float32) {
	m.mustLen("AddGrads", len(dst))
	for i, g := range m.grad {
		dst[i] += float32(scale * g)
	}
}

// Close releases the VM; the Model must not be used afterwards.
func (m *Model) Close() error { return m.vm.Close() }

func (m *Model) mustLen(op string, n int) {
	if n != m.n {
		panic(fmt.Sprintf("trainer: Model.%s: buffer has %d values, want NumParams=%d", op, n, m.n))
	}
}
