package trainer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/swarmtrain/swarmtrain/compression"
)

// paramSpec is one parameter tensor of a graph network: its exported
// name and shape, the shape of its graph node (a bias is stored as [out]
// but added as [1,out] or [1,out,1,1]), and its initialisation.
type paramSpec struct {
	Tensor
	node  []int   // graph shape; nil means Shape
	limit float64 // drawn from U(−limit, limit); 0 means every value is fill
	fill  float32 // the constant of an undrawn tensor (a layer norm's gain is 1)
}

// forwardFunc builds the logits [rows,classes] of x [rows,dim] from the
// parameter nodes, given in spec order.
type forwardFunc func(x *G.Node, p []*G.Node) (*G.Node, error)

// graphNet is the training half every gorgonia model shares: the graph
// for one batch with its backward pass, and the flat-vector view of its
// parameters and gradients.
type graphNet struct {
	specs  []paramSpec
	offs   []int // flat offset of each param; offs[len(specs)] = n
	n      int
	batch  int
	dim    int // values per input row
	class  int // classes of the labels
	inputs []*G.Node
	feed   feedFunc
	params []*G.Node
	cost   G.Value
	vm     G.VM
	grad   []float32 // last mean gradient, flat
}

// feedFunc fills a training graph's input values in place from one batch
// (already checked for length): rows of x, labels y.
type feedFunc func(x []float32, y []uint8) error

// buildFunc adds a network's inputs and loss to g, given its parameter
// nodes, and says how a batch fills the inputs. The inputs must carry
// their values (G.WithValue), which the feed rewrites in place.
type buildFunc func(g *G.ExprGraph, params []*G.Node) (cost *G.Node, inputs []*G.Node, feed feedFunc, err error)

// classifier is the buildFunc of a network whose rows are dim float
// features and whose loss is the mean cross-entropy of fwd's logits.
func classifier(batch, dim, classes int, fwd forwardFunc) buildFunc {
	return func(g *G.ExprGraph, params []*G.Node) (*G.Node, []*G.Node, feedFunc, error) {
		xv := tensor.New(tensor.WithShape(batch, dim), tensor.Of(tensor.Float32))
		yv := tensor.New(tensor.WithShape(batch, classes), tensor.Of(tensor.Float32))
		x := G.NewMatrix(g, tensor.Float32, G.WithShape(batch, dim), G.WithName("x"), G.WithValue(xv))
		y := G.NewMatrix(g, tensor.Float32, G.WithShape(batch, classes), G.WithName("y"), G.WithValue(yv))
		z, err := fwd(x, params)
		if err != nil {
			return nil, nil, nil, err
		}
		cost, err := crossEntropy(z, y)
		if err != nil {
			return nil, nil, nil, err
		}
		feed := func(xs []float32, ys []uint8) error {
			yd := yv.Data().([]float32)
			clear(yd)
			for i, c := range ys {
				if int(c) >= classes {
					return fmt.Errorf("model: label %d at row %d out of range 0..%d", c, i, classes-1)
				}
				yd[i*classes+int(c)] = 1
			}
			copy(xv.Data().([]float32), xs)
			return nil
		}
		return cost, []*G.Node{x, y}, feed, nil
	}
}

// layout fills offs and n from specs, refusing a model over the size cap.
func layout(specs []paramSpec) (offs []int, n int, err error) {
	for _, s := range specs {
		offs = append(offs, n)
		n += s.Size()
		if n > maxNumParams {
			return nil, 0, fmt.Errorf("model: more than %d parameters", maxNumParams)
		}
	}
	return append(offs, n), n, nil
}

// initSpecs draws the initial flat parameter vector from a PCG seeded by
// seed, spec by spec. Only IEEE-exact operations (no fusable multiply-add)
// touch the random numbers, so the result is the same on every
// architecture. gorgonia's own initialisers seed from the clock and are
// never used.
func initSpecs(specs []paramSpec, seed uint64, n int) []float32 {
	src := rand.NewPCG(seed, 0x696e6974) // "init"
	p := make([]float32, 0, n)
	for _, s := range specs {
		if s.limit == 0 {
			for range s.Size() {
				p = append(p, s.fill)
			}
			continue
		}
		for range s.Size() {
			u := float64(src.Uint64()>>11) * 0x1p-53 // [0,1), exact
			p = append(p, float32((2*u-1)*s.limit))
		}
	}
	return p
}

// paramNodes adds one node per spec to g, holding a copy of its slice of
// flat.
func paramNodes(g *G.ExprGraph, specs []paramSpec, offs []int, flat []float32) []*G.Node {
	nodes := make([]*G.Node, len(specs))
	for i, s := range specs {
		shape := s.node
		if shape == nil {
			shape = s.Shape
		}
		v := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float32(nil), flat[offs[i]:offs[i+1]]...)))
		nodes[i] = G.NewTensor(g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(s.Name), G.WithValue(v))
	}
	return nodes
}

// newGraphNet builds the training graph for batch rows of dim values,
// with the parameters drawn from seed.
func newGraphNet(specs []paramSpec, batch, dim, classes int, seed uint64, build buildFunc) (_ *graphNet, err error) {
	m := &graphNet{specs: specs, batch: batch, dim: dim, class: classes}
	if m.offs, m.n, err = layout(specs); err != nil {
		return nil, err
	}
	if err := m.build(initSpecs(specs, seed, m.n), build); err != nil {
		return nil, fmt.Errorf("model: building graph: %w", err)
	}
	m.grad = make([]float32, m.n)
	return m, nil
}

// buildMu serialises graph construction: gorgonia shares its constant
// nodes (one, two, …) between graphs and caches their hash codes without
// a lock, so two models built at once in one process race (found by the
// race detector with several in-process nodes).
var buildMu sync.Mutex

func (m *graphNet) build(init []float32, build buildFunc) (err error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	defer func() { // gorgonia reports some shape errors by panicking
		if r := recover(); r != nil {
			err = fmt.Errorf("gorgonia panic: %v", r)
		}
	}()
	g := G.NewGraph()
	m.params = paramNodes(g, m.specs, m.offs, init)
	cost, inputs, feed, err := build(g, m.params)
	if err != nil {
		return err
	}
	m.inputs, m.feed = inputs, feed
	read := G.Read(cost, &m.cost)
	grads, err := G.Grad(cost, m.params...)
	if err != nil {
		return err
	}
	// Compile only what the loss and the parameter gradients need. The
	// symbolic backward also builds d(loss)/d(input), which nobody reads;
	// on the full graph the tape would run that product every step.
	sub := g.SubgraphRoots(append(grads, read)...)
	m.vm = G.NewTapeMachine(sub, G.BindDualValues(m.params...))
	return nil
}

// Tensors lists the parameter tensors in the order of the flat vector.
func (m *graphNet) Tensors() []Tensor {
	out := make([]Tensor, len(m.specs))
	for i, s := range m.specs {
		out[i] = Tensor{Name: s.Name, Shape: append([]int(nil), s.Shape...)}
	}
	return out
}

// NumParams is the length of the flat parameter and gradient vectors.
func (m *graphNet) NumParams() int { return m.n }

// ReadParams copies the parameters into dst, which must have length
// NumParams (it panics otherwise: a wrong length is a bug in the caller).
func (m *graphNet) ReadParams(dst []float32) {
	m.mustLen("ReadParams", len(dst))
	for i, p := range m.params {
		copy(dst[m.offs[i]:m.offs[i+1]], p.Value().Data().([]float32))
	}
}

// WriteParams replaces the parameters with src. It rejects a wrong length
// or a NaN/Inf (parameters may come from the network) and then changes
// nothing.
func (m *graphNet) WriteParams(src []float32) error {
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
func (m *graphNet) ComputeGradients(x []float32, y []uint8) (loss float32, err error) {
	if len(y) != m.batch || len(x) != m.batch*m.dim {
		return 0, fmt.Errorf("model: batch has len(x)=%d len(y)=%d, want %d and %d", len(x), len(y), m.batch*m.dim, m.batch)
	}
	if err := m.feed(x, y); err != nil {
		return 0, err
	}

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
	if err := letInputs(m.inputs); err != nil {
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
func (m *graphNet) zeroGrads() {
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
func (m *graphNet) AddGrads(dst []float32, scale float32) {
	m.mustLen("AddGrads", len(dst))
	for i, g := range m.grad {
		dst[i] += float32(scale * g)
	}
}

// letInputs binds every input node to its value, which a feed has just
// rewritten in place.
func letInputs(inputs []*G.Node) error {
	for _, in := range inputs {
		if err := G.Let(in, in.Value()); err != nil {
			return err
		}
	}
	return nil
}

// copyParamsTo copies the parameters into the same-shaped nodes of an
// eval graph.
func (m *graphNet) copyParamsTo(nodes []*G.Node) {
	for i, p := range m.params {
		copy(nodes[i].Value().Data().([]float32), p.Value().Data().([]float32))
	}
}

// Close releases the VM; the model must not be used afterwards.
func (m *graphNet) Close() error { return m.vm.Close() }

func (m *graphNet) mustLen(op string, n int) {
	if n != m.n {
		panic(fmt.Sprintf("trainer: model.%s: buffer has %d values, want NumParams=%d", op, n, m.n))
	}
}

// evalGraph is a forward-only copy of a network for rows inputs at a time,
// on its own graph: an eval machine on the training graph would share its
// train/eval state (gorgonia's dropout) and its fixed batch size.
type evalGraph struct {
	rows   int
	x      *G.Node
	xv     *tensor.Dense
	params []*G.Node
	logits G.Value
	vm     G.VM
}

func newEvalGraph(m *graphNet, rows int, fwd forwardFunc) (_ *evalGraph, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("model: building eval graph: gorgonia panic: %v", r)
		}
	}()
	e := &evalGraph{rows: rows}
	g := G.NewGraph()
	e.xv = tensor.New(tensor.WithShape(rows, m.dim), tensor.Of(tensor.Float32))
	e.x = G.NewMatrix(g, tensor.Float32, G.WithShape(rows, m.dim), G.WithName("x"), G.WithValue(e.xv))
	e.params = paramNodes(g, m.specs, m.offs, make([]float32, m.n))
	z, err := fwd(e.x, e.params)
	if err != nil {
		return nil, fmt.Errorf("model: building eval graph: %w", err)
	}
	G.Read(z, &e.logits)
	e.vm = G.NewTapeMachine(g)
	return e, nil
}

// evaluate scores ds with the training parameters of m: rows at a time,
// the last chunk padded with zero rows whose outputs are ignored.
func (e *evalGraph) evaluate(m *graphNet, ds *Dataset) (acc, loss float64, err error) {
	if err := ds.Validate(); err != nil {
		return 0, 0, err
	}
	if ds.Dim != m.dim || ds.Classes != m.class {
		return 0, 0, fmt.Errorf("evaluate: dataset %q is %d→%d classes, model is %d→%d", ds.Name, ds.Dim, ds.Classes, m.dim, m.class)
	}
	m.copyParamsTo(e.params)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("evaluate: gorgonia panic: %v", r)
		}
	}()
	xd := e.xv.Data().([]float32)
	correct, total := 0, 0.0
	for lo := 0; lo < ds.N; lo += e.rows {
		rows := min(e.rows, ds.N-lo)
		clear(xd[copy(xd, ds.Rows(lo, rows, xd)):])
		if err := G.Let(e.x, e.xv); err != nil {
			return 0, 0, err
		}
		if err := e.vm.RunAll(); err != nil {
			return 0, 0, fmt.Errorf("evaluate: forward: %w", err)
		}
		z, ok := e.logits.Data().([]float32)
		if !ok || len(z) != e.rows*m.class {
			e.vm.Reset()
			return 0, 0, errors.New("evaluate: logits are not float32 rows×classes")
		}
		for r := range rows {
			ok, l := scoreLogits(z[r*m.class:(r+1)*m.class], int(ds.Y[lo+r]))
			if ok {
				correct++
			}
			total += l
		}
		e.vm.Reset()
	}
	return float64(correct) / float64(ds.N), total / float64(ds.N), nil
}
