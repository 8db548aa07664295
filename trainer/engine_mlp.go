package trainer

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/trainer/engine"
)

// Engines a ModelConfig can name: the gorgonia graph, the reference, or
// trainer/engine's hand-written layers (the MLP and BERT so far).
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
	nativeParams
	cfg   ModelConfig
	net   *engine.MLP
	batch int
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
	return &nativeMLP{nativeParams: nativeParams{specs: specs, params: net.Params(), grad: net.Grads()}, cfg: cfg, net: net, batch: cfg.Batch}, nil
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

func (m *nativeMLP) Evaluate(ds *Dataset) (acc, loss float64, err error) {
	sizes := m.net.Sizes()
	return evaluateImages(ds, sizes[0], sizes[len(sizes)-1], m.net.Rows(), m.net.Forward)
}

// Config returns the model's configuration.
func (m *nativeMLP) Config() ModelConfig {
	c := m.cfg
	c.Hidden = append([]int(nil), c.Hidden...)
	return c
}

// Sizes returns the layer widths: input, hidden..., classes.
func (m *nativeMLP) Sizes() []int { return m.net.Sizes() }
