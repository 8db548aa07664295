package trainer

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/trainer/engine"
)

// nativeCNN is the CNN on trainer/engine: the same parameter tensors,
// names, layout, initialisation and loss as the gorgonia CNN (NewCNN), so
// checkpoints, averaging, freezing, export and transfer learning do not
// see which one ran.
type nativeCNN struct {
	nativeParams
	cfg ModelConfig
	net *engine.CNN
}

func newNativeCNN(cfg ModelConfig, shape []int, classes int) (*nativeCNN, error) {
	specs, cfg, err := cnnSpecs(cfg, shape, classes)
	if err != nil {
		return nil, err
	}
	_, n, err := layout(specs)
	if err != nil {
		return nil, err
	}
	// One plan serves training (Batch rows) and evaluation (cnnEvalRows).
	net, err := engine.NewCNN(shape, cfg.Channels, convKernel, cfg.Hidden, classes, max(cfg.Batch, cnnEvalRows))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if len(net.Params()) != n {
		return nil, fmt.Errorf("model: native CNN has %d parameters, the gorgonia layout %d", len(net.Params()), n)
	}
	if cfg.precision() == PrecisionBF16 {
		if err := CheckPrecision(PrecisionBF16); err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		net.UseBF16()
	}
	copy(net.Params(), initSpecs(specs, cfg.Seed, n))
	return &nativeCNN{nativeParams: nativeParams{specs: specs, params: net.Params(), grad: net.Grads()}, cfg: cfg, net: net}, nil
}

func (m *nativeCNN) ComputeGradients(x []float32, y []uint8) (float32, error) {
	if len(y) != m.cfg.Batch || len(x) != m.cfg.Batch*m.net.Dim() {
		return 0, fmt.Errorf("model: batch has len(x)=%d len(y)=%d, want %d and %d", len(x), len(y), m.cfg.Batch*m.net.Dim(), m.cfg.Batch)
	}
	loss, err := m.net.Step(x, y)
	if err != nil {
		clear(m.grad)
		return 0, fmt.Errorf("model: %w", err)
	}
	return loss, nil
}

func (m *nativeCNN) Evaluate(ds *Dataset) (acc, loss float64, err error) {
	return evaluateImages(ds, m.net.Dim(), m.net.Classes(), m.net.Rows(), m.net.Forward)
}

// Config returns the model's configuration, default channels filled in.
func (m *nativeCNN) Config() ModelConfig {
	c := m.cfg
	c.Hidden = append([]int(nil), c.Hidden...)
	c.Channels = append([]int(nil), c.Channels...)
	return c
}
