package trainer

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/compression"
	"github.com/swarmtrain/swarmtrain/trainer/engine"
	"github.com/swarmtrain/swarmtrain/trainer/kernels"
)

// Engines a ModelConfig can name: the gorgonia graph, the reference, or
// trainer/engine's hand-written layers (the MLP so far).
const (
	EngineGorgonia = "gorgonia"
	EngineNative   = "native"
)

// DefaultEngine is the engine a ModelConfig with Engine "" gets for the
// architectures the native engine has; the others always get gorgonia.
// Native is the default since the 4-node MNIST demo reached 97.91% on it
// (≥ 97.8%, as on gorgonia; docs/BENCHMARKS.md).
var DefaultEngine = EngineNative

// nativeMLP is the MLP on trainer/engine: the same parameter tensors,
// names, initialisation and loss as the gorgonia MLP, so checkpoints,
// averaging and export do not see which one ran.
type nativeMLP struct {
	cfg   ModelConfig
	specs []paramSpec
	net   *engine.MLP
	batch int
	grad  []float32 // the kept gradient, net's own buffer: zero until a step succeeds
}

func newNativeMLP(cfg ModelConfig, inputDim, classes int) (*nativeMLP, error) {
	if err := checkMLPConfig(cfg, inputDim, classes); err != nil {
		return nil, err
	}
	sizes := append(append([]int{inputDim}, cfg.Hidden...), classes)
	specs := denseSpecs(sizes, "layers", 0)
	_, n, err := layout(specs)
	if err != nil {
		return nil, err
	}
	// One plan serves training (Batch rows) and evaluation (evalChunk).
	net, err := engine.NewMLP(sizes, max(cfg.Batch, evalChunk))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if cfg.precision() == PrecisionBF16 {
		if err := CheckPrecision(PrecisionBF16); err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		net.UseBF16()
	}
	copy(net.Params(), initSpecs(specs, cfg.Seed, n))
	return &nativeMLP{cfg: cfg, specs: specs, net: net, batch: cfg.Batch, grad: net.Grads()}, nil
}

func (m *nativeMLP) Tensors() []Tensor {
	out := make([]Tensor, len(m.specs))
	for i, s := range m.specs {
		out[i] = Tensor{Name: s.Name, Shape: append([]int(nil), s.Shape...)}
	}
	return out
}

func (m *nativeMLP) NumParams() int { return len(m.grad) }

func (m *nativeMLP) ReadParams(dst []float32) {
	m.mustLen("ReadParams", len(dst))
	copy(dst, m.net.Params())
}

func (m *nativeMLP) WriteParams(src []float32) error {
	if len(src) != len(m.grad) {
		return fmt.Errorf("model: WriteParams got %d values, want %d", len(src), len(m.grad))
	}
	if i := compression.FirstNonFinite(src); i >= 0 {
		return fmt.Errorf("model: WriteParams: value %d is %v", i, src[i])
	}
	copy(m.net.Params(), src)
	return nil
}

func (m *nativeMLP) ComputeGradients(x []float32, y []uint8) (float32, error) {
	dim := m.net.Sizes()[0]
	if len(y) != m.batch || len(x) != m.batch*dim {
		return 0, fmt.Errorf("model: batch has len(x)=%d len(y)=%d, want %d and %d", len(x), len(y), m.batch*dim, m.batch)
	}
	loss, err := m.net.Step(x, y)
	if err != nil {
		clear(m.grad)
		return 0, fmt.Errorf("model: %w", err)
	}
	return loss, nil
}

// AddGrads rounds each product explicitly, as graphNet.AddGrads does, so
// that no FMA fusion changes the bits across architectures.
func (m *nativeMLP) AddGrads(dst []float32, scale float32) {
	m.mustLen("AddGrads", len(dst))
	kernels.Axpy(dst, m.grad, scale)
}

func (m *nativeMLP) Evaluate(ds *Dataset) (acc, loss float64, err error) {
	if err := ds.Validate(); err != nil {
		return 0, 0, err
	}
	sizes := m.net.Sizes()
	dim, classes := sizes[0], sizes[len(sizes)-1]
	if ds.Dim != dim || ds.Classes != classes {
		return 0, 0, fmt.Errorf("evaluate: dataset %q is %d→%d classes, model is %d→%d", ds.Name, ds.Dim, ds.Classes, dim, classes)
	}
	correct, total := 0, 0.0
	var in []float32 // normalised pixels, for a dataset kept as bytes
	if ds.X == nil {
		in = make([]float32, m.net.Rows()*dim)
	}
	for lo := 0; lo < ds.N; lo += m.net.Rows() {
		rows := min(m.net.Rows(), ds.N-lo)
		z, err := m.net.Forward(ds.Rows(lo, rows, in), rows)
		if err != nil {
			return 0, 0, fmt.Errorf("evaluate: %w", err)
		}
		for r := range rows {
			ok, l := scoreLogits(z[r*classes:(r+1)*classes], int(ds.Y[lo+r]))
			if ok {
				correct++
			}
			total += l
		}
	}
	return float64(correct) / float64(ds.N), total / float64(ds.N), nil
}

func (m *nativeMLP) Close() error { return nil }

// Config returns the model's configuration.
func (m *nativeMLP) Config() ModelConfig {
	c := m.cfg
	c.Hidden = append([]int(nil), c.Hidden...)
	return c
}

// Sizes returns the layer widths: input, hidden..., classes.
func (m *nativeMLP) Sizes() []int { return m.net.Sizes() }

func (m *nativeMLP) mustLen(op string, n int) {
	if n != len(m.grad) {
		panic(fmt.Sprintf("trainer: model.%s: buffer has %d values, want NumParams=%d", op, n, len(m.grad)))
	}
}
